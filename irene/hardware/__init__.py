"""The one hardware model of irene: GPUs as data, runtime profiles, and the time, energy and
power of every node from its FLOPs and bytes.

* :mod:`irene.hardware.gpus` — data-sheet figures of the known GPUs (:func:`gpu_spec`) and a
  user's own entry from a file (:func:`load_gpu_spec`);
* :mod:`irene.hardware.runtime` — runtime profiles (eager PyTorch, compiled, vLLM versions):
  overheads and achievable efficiencies, not physics;
* :mod:`irene.hardware.model` — a primitive's roofline time with fitted efficiencies and the
  runtime's overheads, its power from utilisation, never above the board limit; a module from
  its children plus an overhead;
* :mod:`irene.hardware.families` — the family of every public model id (the unit of held-out
  evaluation) and the held-out check of issue 21; :mod:`irene.hardware.public_models` —
  architecture facts of the ML.ENERGY v1/v2 checkpoints;
* :mod:`irene.hardware.work`, :mod:`irene.hardware.data`, :mod:`irene.hardware.fit`,
  :mod:`irene.hardware.params` — workloads, the public measurements as workloads, the fit, and
  the shipped fitted parameters.

Importing this package imports neither torch nor transformers.
"""

from irene.hardware.gpus import GPUS, GpuSpec, GpuSpecError, gpu_spec, load_gpu_spec
from irene.hardware.model import (
    HardwareModel,
    HardwareParams,
    NodeCost,
    module_cost,
    primitive_cost,
    roofline_time,
)
from irene.hardware.runtime import CLASSES, RUNTIMES, RuntimeProfile, runtime_profile

__all__ = ["CLASSES", "GPUS", "RUNTIMES", "GpuSpec", "GpuSpecError", "HardwareModel",
           "HardwareParams", "NodeCost", "RuntimeProfile", "gpu_spec", "load_gpu_spec",
           "module_cost", "primitive_cost", "roofline_time", "runtime_profile"]
