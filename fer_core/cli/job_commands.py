"""``jobs ...``: background training jobs, one handler per subcommand."""

from __future__ import annotations

import argparse
import sys

from fer_core import jobs
from fer_core.cli.output import add_json_option, emit
from fer_core.cli.training import add_train_options, config_from_args
from fer_core.config import check_writable, fer2013_dir, runs_dir
from fer_core.errors import FerError
from fer_core.fmt import fmt_seconds
from fer_core.jobs import RUNNERS
from fer_core.runs.recipes import get_recipe
from fer_core.runs.rundir import NOTE, TAGS, read_info
from fer_core.runs.trainconfig import TrainConfig


def work(args: argparse.Namespace) -> int:
    return jobs.work(args.id, args.run_dir, args.attempt, tee=args.tee)


def repair(args: argparse.Namespace) -> int:
    backup, ids = jobs.repair()
    print((f"the damaged store is kept as {backup}; " if backup else "") +
          f"rebuilt {len(ids)} job(s) from the run directories under {runs_dir()}")
    return 0


def submit(args: argparse.Namespace) -> int:
    with jobs.JobStore() as store:
        job_id = jobs.submit(config_from_args(args), store, name=args.name or "", note=args.note or "",
                             tags=args.tag, where=args.runner)
        job = store.get(job_id)
    emit(args, {"id": job_id, "status": job.status.value, "run_dir": job.run_dir, "runner": job.runner}, f"{job_id}",
         one_line=True)
    return 0


def sweep(args: argparse.Namespace) -> int:
    """The grid of --arch (or --recipe) x --set values x --seeds, as one sweep."""
    if bool(args.arch) == bool(args.recipe):
        raise FerError("Give --arch A[,B...] or --recipe R (one of them): the sweep's base.")
    data = args.data or fer2013_dir()
    if not data:
        raise FerError("Give --data (or set FER2013_DIR).")
    fixed = {"data": data, **({"epochs": args.epochs} if args.epochs else {})}
    if args.recipe:
        recipe = get_recipe(args.recipe)
        archs = None

        def base(arch):
            return {**recipe.train_config(data).to_dict(), **fixed}
    else:
        archs = [a.strip() for a in args.arch.split(",") if a.strip()]

        def base(arch):
            return TrainConfig.for_model(arch, **fixed).to_dict()
    made = jobs.make_sweep(base, archs, jobs.parse_ints(args.seeds) if args.seeds else None,
                           jobs.parse_values(args.set))
    sweep_id, ids = jobs.submit_sweep(made, where=args.runner, note=args.note or "", tags=args.tag)
    emit(args, {"sweep": sweep_id, "jobs": ids, "configurations": [label for label, _ in made.configs]},
         f"sweep {sweep_id}: jobs {', '.join(map(str, ids))}", one_line=True)
    return 0


def cluster(args: argparse.Namespace) -> int:
    view = jobs.cluster_view()

    def text() -> None:
        print(f"runner: {view['runner']}" + (f" at {view['address']}" if view["address"] else " (this machine)"))
        print(f"nodes: {view['nodes']}; CPUs {view['cpus']:g}, GPUs {view['gpus']:g}; slots for jobs: {view['slots']}")
        if view.get("free_cpus") is not None:
            print(f"free: CPUs {view['free_cpus']:g}, GPUs {view['free_gpus']:g}")
        for node, n in view["jobs_per_node"].items():
            print(f"  {node}: {n} job(s)")

    emit(args, view, text)
    return 0


def listing(args: argparse.Namespace) -> int:
    with jobs.open_store() as store:  # a look: it starts nothing (the server's loop and the changes schedule)
        listed = store.list(sweep=args.sweep)
    note = jobs.not_current(listed)
    if note:
        print(note, file=sys.stderr)

    def text() -> None:
        print(f"{'id':>4}  {'status':<11} {'progress':>8}  {'elapsed':>8}  {'eta':>8}  {'val_acc':>7}  {'runner':<6} "
              f"{'node':<12}  {'sweep':>5}  arch / data")
        for j in listed:
            acc = j.metrics.get("val_accuracy")
            print(f"{j.id:>4}  {j.status.value:<11} {j.progress:>8.0%}  {fmt_seconds(j.elapsed):>8}  "
                  f"{fmt_seconds(j.eta):>8}  {'-' if acc is None else f'{acc:.4f}':>7}  {j.runner:<6} "
                  f"{(j.node_id or '-')[:12]:<12}  {j.sweep or '-':>5}  {j.config.get('arch')} / {j.config.get('data')}")

    emit(args, [j.to_dict() for j in listed], text)
    return 0


def schedule(args: argparse.Namespace) -> int:
    """One pass of what the full server's loop does every few seconds (reads never schedule): for a
    queue followed from the command line alone."""
    check_writable("Scheduling jobs")
    with jobs.open_store() as store:
        started = jobs.schedule(store)
    print(f"started {len(started)} job(s)" + (f": {', '.join(map(str, started))}" if started else ""))
    return 0


def _job(store, value: int):
    if not 0 < value < 2 ** 63:
        raise FerError(f"There is no job {value}; 'python -m fer_core jobs list' shows them.")
    return store.get(value)


def show(args: argparse.Namespace) -> int:
    with jobs.open_store() as store:
        job = _job(store, args.id)
    try:  # the note and tags given when the job was submitted (none when run.json is unreadable)
        info = read_info(job.run_dir)
    except FerError:
        info = {}
    shown = {**job.to_dict(), "note": str(info.get(NOTE, "")), "tags": list(info.get(TAGS, []))}

    def text() -> None:
        for key, value in shown.items():
            if key != "config":
                print(f"{key:>16}: {value}")

    emit(args, shown, text)
    return 0


def cancel(args: argparse.Namespace) -> int:
    with jobs.scheduled_store() as store:
        job = _job(store, args.id)
        state = store.cancel(job.id)
        jobs.schedule(store)  # a job cancelled on a cluster is stopped there now, and its slot goes to the next
    print(f"job {job.id}: " + ("cancelled" if state == jobs.JobStatus.CANCELLED
                               else "stopping at the next batch; its last checkpoint is kept"))
    return 0


def resume(args: argparse.Namespace) -> int:
    limits = jobs.Limits.from_env()
    with jobs.scheduled_store() as store:
        job = _job(store, args.id)
        if args.epochs is not None:
            limits.check_epochs(args.epochs)
        store.resume(job.id, epochs=args.epochs, max_waiting=limits.queued)
        jobs.schedule(store)
        print(f"job {job.id}: {store.get(job.id).status.value}")
    return 0


def delete(args: argparse.Namespace) -> int:
    with jobs.scheduled_store() as store:
        job = _job(store, args.id)
        kept = store.delete(job.id)
    print(f"job {job.id}: deleted with its run's files" + (
        f"; kept {job.run_dir} with what FER Studio did not write there: {', '.join(kept[:5])}"
        + (" ..." if len(kept) > 5 else "") if kept else ""))
    return 0


def logs(args: argparse.Namespace) -> int:
    with jobs.open_store() as store:
        job = _job(store, args.id)
    print(jobs.job_log(job, tail=args.tail), end="")
    return 0


def add_commands(sub) -> None:
    group = sub.add_parser("jobs", help="background training jobs").add_subparsers(dest="jobs_command", required=True)
    sub_ = group.add_parser("submit", help="queue a training job; prints its id")
    add_train_options(sub_)
    sub_.add_argument("--name", help="the run's name (its folder under data/runs; default: a time stamp)")
    sub_.add_argument("--note", help="a note kept with the run (what this run tries), shown on the Runs page")
    sub_.add_argument("--tag", action="append", default=[], metavar="TAG",
                      help="a tag to group runs by on the Runs page (repeat, or separate with commas)")
    runner_help = ("where it runs: 'local' (this machine) or 'ray' (the cluster at FER_RAY_ADDRESS or the app's "
                   "setting); default: ray when a cluster is set, else local")
    sub_.add_argument("--runner", choices=RUNNERS, help=runner_help)
    add_json_option(sub_)
    sub_.set_defaults(func=submit)

    sw = group.add_parser("sweep", help="submit a grid of configurations as one sweep (prints its id and the jobs')")
    sw.add_argument("--data", help="data source (default: FER2013_DIR)")
    sw.add_argument("--arch", help="architectures, separated by commas")
    sw.add_argument("--recipe", help="or a recipe as the base (N seeds of this recipe)")
    sw.add_argument("--seeds", help="seeds, separated by commas, e.g. 0,1,2")
    sw.add_argument("--set", action="append", default=[], metavar="KEY=V1,V2",
                    help="a setting and its values, e.g. --set label_smoothing=0,0.1 (repeat for more)")
    sw.add_argument("--epochs", type=int)
    sw.add_argument("--note", help="a note kept with every run of the sweep")
    sw.add_argument("--tag", action="append", default=[], metavar="TAG")
    sw.add_argument("--runner", choices=RUNNERS, help=runner_help)
    add_json_option(sw)
    sw.set_defaults(func=sweep)

    cl = group.add_parser("cluster", help="where jobs run: the runner, CPUs and GPUs (total, free), jobs per node")
    add_json_option(cl)
    cl.set_defaults(func=cluster)

    ls = group.add_parser("list", help="all jobs, newest first")
    ls.add_argument("--sweep", type=int, help="only the jobs of this sweep")
    add_json_option(ls)
    ls.set_defaults(func=listing)

    group.add_parser("schedule", help="take the workers' reports in, notice dead workers and start queued jobs "
                     "(what the app's server does every few seconds; looks such as 'list' never do)"
                     ).set_defaults(func=schedule)

    sh = group.add_parser("show", help="one job in full")
    sh.add_argument("id", type=int)
    add_json_option(sh)
    sh.set_defaults(func=show)

    for name, func, text in (("cancel", cancel, "stop a job at its next batch (or drop it from the queue)"),
                             ("resume", resume, "queue a cancelled, failed or interrupted job again"),
                             ("delete", delete, "forget a job that is not running and remove its run directory"),
                             ("work", work, "run a claimed job in this process (used by the runner)")):
        p = group.add_parser(name, help=text)
        p.add_argument("id", type=int)
        p.set_defaults(func=func)
    group.choices["resume"].add_argument("--epochs", type=int, help="extend the run to N epochs in all")
    group.choices["work"].add_argument("--run-dir", required=True, help="the job's run directory (its lease is there)")
    group.choices["work"].add_argument("--attempt", type=int, required=True, help="the attempt this worker runs")
    group.choices["work"].add_argument("--tee", action="store_true", help="also append the output to the run's "
                                       "log.txt (a cluster keeps the output elsewhere)")
    group.add_parser("repair", help="rebuild a damaged job store from the run directories (keeps a backup)"
                     ).set_defaults(func=repair)
    lg = group.add_parser("logs", help="the end of a job's log")
    lg.add_argument("id", type=int)
    lg.add_argument("--tail", type=int, default=20_000, help="bytes from the end (default 20000)")
    lg.set_defaults(func=logs)
