"""Serving a model behind an HTTP API and measuring what each request costs.

* :mod:`irene.serve.engines`: one model loaded per runtime (torch, torchscript, onnxruntime,
  openvino), greedy decoding with a KV cache (a prefill, then one cached step per token);
* :mod:`irene.serve.app`: the FastAPI app of ``irene serve`` (``POST /generate``,
  ``GET /health``);
* :mod:`irene.serve.load`: ``irene load``, the HTTP load generator with a meter;
* :mod:`irene.serve.attribution`: each metered interval's energy split among the requests
  active in it;
* :mod:`irene.serve.bench`: ``irene serve-bench``, runtimes side by side with statistics;
* :mod:`irene.serve.prompts`: the shipped HumanEval prompts and a user's prompt files.

Nothing here is imported by ``irene --help``: fastapi, uvicorn and httpx are the ``serve``
extra (``pip install -e '.[serve]'``).
"""

SERVE_HINT = "pip install -e '.[serve]'"
#: the runtime engines :mod:`irene.serve.engines` loads (here, so parsers import no torch)
RUNTIMES = ("torch", "torchscript", "onnxruntime", "openvino")
