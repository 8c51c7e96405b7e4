"""``cifarnets export``: a run folder as a timm / Hugging Face Hub model folder."""

from __future__ import annotations

import argparse

from ._common import UsageError

__all__ = ["register"]


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "export", help="write a run's best checkpoint as a timm / Hugging Face Hub model folder",
        description="Write the best checkpoint of a run folder with timm's save_for_hf: config.json (architecture "
                    "and create() keywords), model.safetensors, a README.md model card and the curves picture. "
                    "Load it with timm.create_model('local-dir:DIR', pretrained=True) or "
                    "cifarnets.create('local-dir:DIR').")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `cifarnets train`")
    p.add_argument("--out", metavar="DIR", help="the model folder to write (new or empty)")
    p.add_argument("--push-to-hub", metavar="REPO", default=None,
                   help="also push to this Hugging Face Hub repository (timm's push_to_hf_hub; needs a token)")
    p.add_argument("--private", action="store_true", help="create the Hub repository as private")
    p.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> int:
    from ..hub import export_run, push_run

    if not args.out and not args.push_to_hub:
        raise UsageError("say where the model goes: --out DIR and/or --push-to-hub REPO")
    if args.out:
        out = export_run(args.run_dir, args.out)
        print(f"wrote {out}: " + ", ".join(sorted(p.name for p in out.iterdir())))
        print(f"load it with: import cifarnets, timm; model = timm.create_model({'local-dir:' + str(out)!r}, "
              f"pretrained=True)")
    if args.push_to_hub:
        url = push_run(args.run_dir, args.push_to_hub, private=args.private)
        print(f"pushed to {url}")
    return 0
