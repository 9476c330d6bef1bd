"""LLM serving energy per token without a meter: the vLLM decode step as a workload of the one
hardware model (:mod:`irene.hardware`).

* :mod:`irene.serving.structure` — weights, KV cache and state of a decoder LLM from its config
  (analytic: no model is built);
* :mod:`irene.serving.decode` — what one steady-state decode step reads, computes and
  communicates, per layer and module, how parallelism splits it over GPUs, and the step as a
  :class:`~irene.hardware.work.Work` of the hardware model;
* :mod:`irene.serving.data` — measured rows (the ML.ENERGY v3 extract) and their decode steps;
  fitting lives in :mod:`irene.hardware.fit` (all data versions, one model);
* :mod:`irene.serving.estimate`, :mod:`irene.serving.report` — ``irene estimate MODEL
  --serving vllm`` with the shipped parameters (:mod:`irene.hardware.params`).
"""
