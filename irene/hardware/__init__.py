"""Hardware: GPUs as data and the model of a primitive's time and energy on them."""
