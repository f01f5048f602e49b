"""`pyray job submit|status|logs|stop|list|delete`, as Ray's `ray job`."""
from __future__ import annotations

import asyncio
import json
import sys
import time

_ADDRESS_HELP = ("the dashboard's address (default: $RAY_API_SERVER_ADDRESS, else $RAY_ADDRESS "
                 "or $PYRAY_ADDRESS when it is an http(s) URL, else http://127.0.0.1:8265)")


def _client(args):
    from pyray.job_submission import JobSubmissionClient
    headers = None
    if getattr(args, "headers", None):
        try:
            headers = json.loads(args.headers)
            assert isinstance(headers, dict)
        except (ValueError, AssertionError):
            sys.exit("pyray job: --headers must be a JSON object, e.g. "
                     "'{\"Authorization\": \"Bearer <token>\"}'")
    try:
        client = JobSubmissionClient(args.address, headers=headers,
                                     verify=not getattr(args, "no_verify", False))
    except (ConnectionError, ValueError, RuntimeError) as err:
        sys.exit(f"pyray job: {err}")
    return client


def _rule(text):
    line = "-" * max(len(text), 20)
    print(f"{line}\n{text}\n{line}", flush=True)


def _follow(client, job_id):
    async def run():
        async for chunk in client.tail_job_logs(job_id):
            sys.stdout.write(chunk)
            sys.stdout.flush()
    asyncio.run(run())


def _final(client, job_id):
    """Prints the job's end as Ray does; the exit code: 1 if it failed."""
    from pyray.job_submission import JobStatus
    info = client.get_job_info(job_id)
    print()
    if info.status == JobStatus.SUCCEEDED:
        _rule(f"Job '{job_id}' succeeded")
    elif info.status == JobStatus.STOPPED:
        _rule(f"Job '{job_id}' was stopped")
    elif info.status == JobStatus.FAILED:
        _rule(f"Job '{job_id}' failed")
        print(f"Status message: {info.message}", flush=True)
        return 1
    else:
        print(f"Status for job '{job_id}': {info.status.value}")
    return 0


def _json_arg(value, flag):
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError as err:
        sys.exit(f"pyray job submit: {flag} must be JSON: {err}")


def _command_line(words):
    """The shell command of `-- word...`: one word is taken as a command
    line as it is (pipes, &&); several are quoted as the shell would see them."""
    import shlex
    return words[0] if len(words) == 1 else shlex.join(words)


def submit(args):
    entrypoint = list(args.entrypoint)
    if entrypoint and entrypoint[0] == "--":
        entrypoint = entrypoint[1:]
    if not entrypoint:
        sys.exit("pyray job submit: give the entrypoint after --, e.g. "
                 "pyray job submit -- python script.py")
    runtime_env = _json_arg(args.runtime_env_json, "--runtime-env-json") or {}
    if args.runtime_env:
        if runtime_env:
            sys.exit("pyray job submit: give only one of --runtime-env and --runtime-env-json")
        try:
            import yaml
        except ImportError:
            sys.exit("pyray job submit: --runtime-env reads YAML, which needs PyYAML; use "
                     "--runtime-env-json instead")
        with open(args.runtime_env) as f:
            runtime_env = yaml.safe_load(f) or {}
    if args.working_dir:
        runtime_env["working_dir"] = args.working_dir
    client = _client(args)
    print(f"Job submission server address: {client.address}")
    try:
        job_id = client.submit_job(
            entrypoint=_command_line(entrypoint), submission_id=args.submission_id or args.job_id,
            runtime_env=runtime_env or None,
            metadata=_json_arg(args.metadata_json, "--metadata-json"),
            entrypoint_num_cpus=args.entrypoint_num_cpus,
            entrypoint_num_gpus=args.entrypoint_num_gpus,
            entrypoint_memory=args.entrypoint_memory,
            entrypoint_resources=_json_arg(args.entrypoint_resources, "--entrypoint-resources"))
    except (RuntimeError, ValueError, ConnectionError) as err:
        sys.exit(f"pyray job submit: {err}")
    print()
    _rule(f"Job '{job_id}' submitted successfully")
    print(f"\nNext steps\n  Query the logs of the job:\n    pyray job logs {job_id}\n"
          f"  Query the status of the job:\n    pyray job status {job_id}\n"
          f"  Request the job to be stopped:\n    pyray job stop {job_id}\n", flush=True)
    if args.no_wait:
        return 0
    print("Tailing logs until the job exits (disable with --no-wait):", flush=True)
    _follow(client, job_id)
    return _final(client, job_id)


def status(args):
    client = _client(args)
    try:
        info = client.get_job_info(args.job_id)
    except RuntimeError as err:
        sys.exit(f"pyray job status: {err}")
    print(f"Status for job '{args.job_id}': {info.status.value}")
    if info.message:
        print(f"Status message: {info.message}")
    return 0


def logs(args):
    client = _client(args)
    try:
        if args.follow:
            _follow(client, args.job_id)
        else:
            sys.stdout.write(client.get_job_logs(args.job_id))
    except RuntimeError as err:
        sys.exit(f"pyray job logs: {err}")
    return 0


def stop(args):
    client = _client(args)
    print(f"Attempting to stop job '{args.job_id}'")
    try:
        client.stop_job(args.job_id)
    except RuntimeError as err:
        sys.exit(f"pyray job stop: {err}")
    if args.no_wait:
        return 0
    print(f"Waiting for job '{args.job_id}' to exit (disable with --no-wait):", flush=True)
    deadline = time.monotonic() + 60
    while not client.get_job_status(args.job_id).is_terminal():
        if time.monotonic() > deadline:
            sys.exit(f"pyray job stop: job '{args.job_id}' did not exit within 60 s")
        time.sleep(0.2)
    _final(client, args.job_id)
    return 0


def list_jobs(args):
    client = _client(args)
    print(client.list_jobs())
    return 0


def delete(args):
    client = _client(args)
    try:
        client.delete_job(args.job_id)
    except RuntimeError as err:
        sys.exit(f"pyray job delete: {err}")
    print(f"Job '{args.job_id}' deleted successfully")
    return 0


def add_parser(sub):
    """Adds `job` and its subcommands to the `pyray` command line."""
    import argparse
    job = sub.add_parser("job", help="submit jobs to a cluster's dashboard and follow them "
                                     "(docs/jobs.md)")
    js = job.add_subparsers(dest="job_cmd", required=True)

    def common(p):
        p.add_argument("--address", default=None, help=_ADDRESS_HELP)
        p.add_argument("--headers", default=None,
                       help="JSON object of HTTP headers, e.g. '{\"Authorization\": "
                            "\"Bearer <token>\"}' (default: the cluster token from "
                            "$PYRAY_TOKEN, or the local dashboard's)")
        p.add_argument("--no-verify", action="store_true",
                       help="do not check the server's TLS certificate")
        return p

    s = common(js.add_parser("submit", help="submit a job: pyray job submit [options] -- cmd"))
    s.add_argument("--submission-id", default=None)
    s.add_argument("--job-id", default=None, help=argparse.SUPPRESS)
    s.add_argument("--runtime-env", default=None, help="a YAML file of the runtime env")
    s.add_argument("--runtime-env-json", default=None, help="the runtime env as JSON")
    s.add_argument("--working-dir", default=None,
                   help="a local folder (uploaded) or zip: the entrypoint's working directory")
    s.add_argument("--metadata-json", default=None)
    s.add_argument("--entrypoint-num-cpus", type=float, default=None)
    s.add_argument("--entrypoint-num-gpus", type=float, default=None)
    s.add_argument("--entrypoint-memory", type=int, default=None)
    s.add_argument("--entrypoint-resources", default=None, help="JSON, e.g. '{\"custom\": 1}'")
    s.add_argument("--no-wait", action="store_true",
                   help="return after submitting instead of following the logs")
    s.add_argument("entrypoint", nargs=argparse.REMAINDER)
    s.set_defaults(fn=submit)
    for name, fn, helptext in (("status", status, "a job's status"),
                               ("logs", logs, "a job's log"),
                               ("stop", stop, "stop a job"),
                               ("delete", delete, "delete a finished job")):
        p = common(js.add_parser(name, help=helptext))
        p.add_argument("job_id")
        if name == "logs":
            p.add_argument("-f", "--follow", action="store_true",
                           help="follow the log until the job ends")
        if name == "stop":
            p.add_argument("--no-wait", action="store_true")
        p.set_defaults(fn=fn)
    common(js.add_parser("list", help="every job")).set_defaults(fn=list_jobs)
