"""``irene serve``: one model behind an HTTP API (FastAPI under uvicorn)."""

from __future__ import annotations

import argparse
import signal
import sys
import textwrap

from irene.cli import UserError
from irene.cli.options import add_json_option, positive_int, print_result
from irene.serve import RUNTIMES


def add_parser(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser(
        "serve", help="serve a model over HTTP (POST /generate, GET /health) with a runtime engine",
        description=textwrap.fill(
            "Load MODEL once with a runtime engine and serve greedy completions over HTTP: "
            "POST /generate {\"prompt\": ..., \"max_new_tokens\": N, \"stream\": false} returns "
            "the completion, tokens in and out and the server's time marks; GET /health says "
            "what is served. SIGTERM (or Ctrl-C) stops it once the requests in flight end. "
            "Needs the serve extra: pip install -e '.[serve]' (from a checkout).", width=90))
    serve.add_argument("model", metavar="MODEL",
                       help="built-in name (random weights) or a local directory / config.json; "
                            "never downloaded")
    serve.add_argument("--runtime", choices=RUNTIMES, default="torch",
                       help="runtime engine (default: %(default)s)")
    serve.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default %(default)s: this machine only)")
    serve.add_argument("--port", type=positive_int, default=8000, help="(default %(default)s)")
    serve.add_argument("--max-new-tokens", type=positive_int, default=32,
                       help="tokens generated per request, and the most a request may ask "
                            "(default %(default)s)")
    serve.add_argument("--max-prompt-chars", type=positive_int, default=32_768,
                       help="longest prompt accepted, in characters (default %(default)s)")
    serve.add_argument("--seed", type=int, default=0,
                       help="seed of the random weights (default %(default)s)")
    serve.add_argument("--threads", type=positive_int, default=None, metavar="N",
                       help="torch / ONNX Runtime / OpenVINO threads (default: torch's)")
    add_json_option(serve, quiet="the number of requests served, when the server stops")
    serve.set_defaults(func=run_serve_command)


def _require_serve_extra() -> None:
    import importlib.util

    missing = [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f"{', '.join(missing)} not installed: pip install -e '.[serve]' "
                        "(from a checkout)")


def load_state(args: argparse.Namespace):  # -> irene.serve.app.ServerState
    """Load the engine and tokenizer for ``args`` (UserError when the runtime cannot run)."""
    import torch

    from irene.bench.variants import VariantUnavailable
    from irene.cli.bench import check_device
    from irene.serve.app import ServerState
    from irene.serve.engines import load_engine
    from irene.serve.tokenizer import load_tokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    check_device(args.device)
    try:
        engine = load_engine(args.model, args.runtime, device=args.device, seed=args.seed)
    except VariantUnavailable as exc:
        raise UserError(f"--runtime {args.runtime}: cannot run here: {exc}") from exc
    tokenizer, source = load_tokenizer(args.model, _vocab_size(args.model))
    engine.vocab_limit = min(tokenizer.get_vocab_size(), _vocab_size(args.model))
    return ServerState(model=args.model, engine=engine, tokenizer=tokenizer,
                       tokenizer_source=source, max_new_tokens=args.max_new_tokens,
                       max_prompt_chars=args.max_prompt_chars)


def _vocab_size(model: str) -> int:
    from irene.tracing.registry import load_config

    return int(load_config(model, hub=False).vocab_size)


class _Stopped:
    """Records SIGTERM once uvicorn has shut down gracefully (so the exit status is 0)."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __call__(self, signum: int, frame: object) -> None:
        self.signal = signum


def check_address(host: str, port: int) -> None:
    """UserError unless ``host:port`` can be listened on now (checked before the model loads,
    which takes a while; the server binds it again afterwards)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UserError(f"--host {host}: {exc.strerror}") from exc
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            raise UserError(f"--host {host} --port {port}: cannot listen there "
                            f"({exc.strerror})") from exc


def run_serve_command(args: argparse.Namespace) -> int:
    _require_serve_extra()
    import uvicorn

    from irene.serve.app import build_app

    check_address(args.host, args.port)
    state = load_state(args)
    app = build_app(state)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                            access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    print(f"irene serve: {args.model} ({state.engine.description}, {args.device}) on "
          f"http://{args.host}:{args.port}  [{state.tokenizer_source}]", file=sys.stderr,
          flush=True)
    # uvicorn handles SIGTERM/SIGINT while serving (stop accepting, finish in-flight requests)
    # and re-raises the signal afterwards: note it instead of dying with status 143
    stopped = _Stopped()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stopped)
    try:
        server.run()
    except SystemExit as exc:  # uvicorn exits when it cannot bind (the port was taken since)
        raise UserError(f"could not listen on {args.host}:{args.port} (status {exc.code}; "
                        "see the line above)") from exc
    finally:
        if state.engine.cleanup is not None:
            state.engine.cleanup()
    if not server.started:
        raise UserError(f"could not listen on {args.host}:{args.port} (in use, or not an "
                        "address of this machine)")
    print(f"irene serve: stopped ({state.served} served, {state.dropped} dropped)",
          file=sys.stderr, flush=True)
    print_result(args, {"model": args.model, "runtime": args.runtime, "device": args.device,
                        "url": f"http://{args.host}:{args.port}", "served": state.served,
                        "dropped": state.dropped}, state.served)
    return 0
