"""LLM serving energy per token without a meter, learned from public measurements.

* :mod:`irene.serving.structure` — weights, KV cache and state of a decoder LLM from its
  ``transformers`` config (analytic: no model is built);
* :mod:`irene.serving.decode` — what one steady-state decode step reads, computes and
  communicates, per layer and module, and how parallelism splits it over GPUs;
* :mod:`irene.serving.model` — the predictor: a roofline step time with fitted efficiencies and
  overheads, and a utilisation-dependent power; energy per token = power × time / tokens;
* :mod:`irene.serving.data`, :mod:`irene.serving.training` — measured rows (the ML.ENERGY v3
  extract) and fitting / leave-one-model-out / transfer;
* :mod:`irene.serving.predictor` — the shipped predictor file (JSON, digest-pinned, validated);
* :mod:`irene.serving.estimate`, :mod:`irene.serving.report` — ``irene estimate MODEL
  --serving vllm``.
"""
