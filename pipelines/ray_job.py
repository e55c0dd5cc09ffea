"""Entry point of ``ray job submit``: the pipeline as one Ray job on a cluster.

    ray job submit --address http://HEAD:8265 --working-dir . \\
        --runtime-env-json '{"excludes": [".git", ".venv", "runs"],
                            "env_vars": {"SYNTH_BASE_URL": "http://gpu:8000/v1"}}' \\
        -- python pipelines/ray_job.py --config pipelines/default.yaml --set runs_dir=/shared/runs --set ray.workers=16

The job's runtime_env carries the project (``--working-dir``: the code, rubrics/, tools_registry/, pipelines/) and
the run's settings (a config file inside the working dir, ``--set`` overrides, ``env_vars``); the stages' shards
inherit it. ``runs_dir`` must be an absolute path on storage every node sees: a relative one would land in the
job's temporary copy of the project and vanish with it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import synth
from synth.config import ConfigError, load_config
from synth.endpoints import endpoints_for
from synth.llm.client import EndpointUnavailable
from synth.pipeline import run_pipeline, run_stages
from synth.stages.registry import PIPELINE
from synth.stages.runner import StageIncomplete


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=None, help="Pipeline YAML (default pipelines/default.yaml).")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="section.field=value (repeatable).")
    parser.add_argument("--run", default=None, help="Run name (runs_dir/<run>/).")
    parser.add_argument("--stages", nargs="+", choices=PIPELINE, default=None,
                        help="Run only these stages, in the order given (default: the whole pipeline and the "
                             "dataset; 'dataset' builds it from the stages already run).")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, [*args.sets, *([f"run={args.run}"] if args.run else [])])
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    if not cfg.runs_dir.is_absolute():
        print(f"config error: runs_dir={cfg.runs_dir} is relative; in a Ray job it would land in the job's "
              "temporary copy of the project. Pass --set runs_dir=/an/absolute/shared/path", file=sys.stderr)
        return 2
    try:
        with endpoints_for(cfg, keep_server=True) as endpoints:
            if args.stages:
                summaries = run_stages(cfg, endpoints, stages=args.stages, progress=False)
                result = {"run": cfg.run, "stages": [s.model_dump() for s in summaries]}
            else:
                result = json.loads(run_pipeline(cfg, endpoints, progress=False).model_dump_json())
    except (EndpointUnavailable, StageIncomplete) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    # Where the code came from: the job's working_dir copy, not a checkout on the node.
    result["synth_path"] = str(Path(synth.__file__).resolve().parent)
    print("SYNTH_JOB_RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
