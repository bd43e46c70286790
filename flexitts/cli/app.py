"""`flexitts app`: serve the Gradio web demo (apps/demo.py) on loopback by default."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("app", help="serve the web demo (Gradio) on http://HOST:PORT")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1, this machine only; 0.0.0.0 serves the network)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link (needs the internet)")
    parser.add_argument("--checkpoint", default=None, help="bundle folder or URI (default: the bundled demo models)")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="syntheses run at once; more wait in the queue (default: 1 on a CPU, 2 on a GPU)")
    parser.add_argument("--max-queue", type=int, default=64, help="requests that may wait in the queue (default 64)")
    parser.add_argument("--max-upload-mb", type=float, default=20.0, help="largest accepted upload in MB (default 20)")
    parser.add_argument("--max-text-chars", type=int, default=5000, help="longest text a request may speak (default 5000)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import importlib.util
    import os

    from flexitts.errors import ConfigError, DependencyError

    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must be between 1 and 65535, not {args.port}")
    if args.concurrency is not None and args.concurrency < 1:
        raise ConfigError(f"--concurrency must be at least 1, not {args.concurrency}")
    if not args.max_upload_mb > 0:
        raise ConfigError(f"--max-upload-mb must be positive, not {args.max_upload_mb}")
    if args.max_queue < 1 or args.max_text_chars < 1:
        raise ConfigError("--max-queue and --max-text-chars must be at least 1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from an offline demo
    if importlib.util.find_spec("gradio") is None:
        raise DependencyError("the web demo needs gradio: pip install 'gradio>=4.44'")

    from apps.demo import build_app, launch

    demo = build_app(checkpoint=args.checkpoint, device=args.device, max_upload_mb=args.max_upload_mb,
                     concurrency=args.concurrency, max_queue=args.max_queue, max_text_chars=args.max_text_chars)
    try:
        launch(demo, host=args.host, port=args.port, share=args.share, prevent_thread_lock=True, quiet=True)
    except OSError as error:
        message = " ".join(str(error).split())
        if "empty port" in message:
            message = "the port is in use: choose another --port"
        raise ConfigError(f"cannot serve on {args.host}:{args.port}: {message}") from None
    print(f"flexitts app: serving on {demo.local_url} ({demo.flexitts_concurrency} at once, uploads up to "
          f"{args.max_upload_mb:g} MB); Ctrl+C stops it", flush=True)
    if getattr(demo, "share_url", None):
        print(f"flexitts app: public link {demo.share_url}", flush=True)
    demo.block_thread()  # until Ctrl+C, which closes the server
    return 0
