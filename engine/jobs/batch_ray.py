"""Ray executor for batch annotation (``--ray [ADDRESS]``, ``pip install .[ray]``).

One actor per worker loads the model once and annotates one video (or one chunk of a video,
or merges a video's chunks) per call, through the same
:func:`engine.batch.run_task` as the local pool, so outputs are identical. Ray restarts an actor
whose process died (``max_restarts``) and retries the call on it (``max_task_retries``); the
retry finds the dead attempt's job file and resumes its finished masks.

Actors write each video's folder themselves, at the driver's absolute ``--out`` path: on a
cluster of several machines that path (and the input videos) must be on storage every node
mounts at the same path. The driver warns when the cluster has more than one node.

Thread budget: each actor reserves ``threads`` CPUs of the cluster (``num_cpus``) and runs that
many inference threads, so actors x threads never exceeds the CPUs Ray was given.
"""
from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

from .batch import MAX_ATTEMPTS
from .batch_task import EventCallback, available_cores, run_task, task_tag, thread_budget
from ..errors import StudioError

POLL_S = 0.3
RAY_HINT = "Ray is not installed: pip install '.[ray]' (or: pip install ray)"


def _ray():
    try:
        import ray
    except ImportError:
        raise StudioError(RAY_HINT) from None
    return ray


class _Sink:
    """A CPU-less actor the workers push progress messages to; the driver drains it."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def push(self, event: dict) -> None:
        self.events.append(event)

    def drain(self) -> list[dict]:
        events, self.events = self.events, []
        return events


class _Worker:
    """One Ray actor: loads the model on its first video and keeps it for the next ones."""

    def __init__(self, sink_name: str, threads: int) -> None:
        import ray

        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        import cv2

        cv2.setNumThreads(threads)
        # by name, not by handle: an actor handle as a constructor argument lives in the object
        # store, and Ray warns that a restart could then fail
        self.sink = ray.get_actor(sink_name)

    def pid(self) -> int:
        return os.getpid()

    def annotate(self, task: dict) -> dict:
        import ray

        pid = os.getpid()

        def emit(event: dict) -> None:
            ref = self.sink.push.remote({**event, "worker": pid})
            # A push still queued in this process is lost if it dies: wait for all but progress
            # (a "started" lost that way leaves a killed attempt uncounted).
            if event["type"] != "progress":
                ray.get(ref)

        return run_task(task, emit, threading.Event())


class RayExecutor:
    """``--ray``: None starts a local cluster on this machine's cores, 'auto' or HOST:PORT joins one."""

    kind = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, threads: int | None = None,
                 num_cpus: int | None = None):
        self.address = address or None
        self.requested_workers = workers
        self.requested_threads = threads
        self.num_cpus = num_cpus
        self.started_ray = False
        self.workers = self.threads = 0
        self.cpus = 0
        self.notes: list[str] = []
        self.actors: list = []

    def connect(self) -> None:
        """Start or join the cluster (once) and size the actors to the CPUs it has."""
        if self.workers:
            return
        ray = _ray()
        repo = str(Path(__file__).resolve().parents[2])
        if not ray.is_initialized():
            # the workers import this checkout's engine (not another install of the package)
            env = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p),
                                "OPENCV_FFMPEG_LOGLEVEL": "-8"}}
            kwargs: dict = {"runtime_env": env, "include_dashboard": False, "logging_level": "ERROR",
                            "log_to_driver": False}
            if self.address is None:

                kwargs["num_cpus"] = self.num_cpus or available_cores()
            try:
                ray.init(address=self.address or "local", **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = self.address or "a local cluster"
                hint = ""
                if "auth" in str(exc).lower() and os.environ.get("RAY_AUTH_MODE") != "token":
                    hint = " (a cluster started by `ray start` uses token authentication: export RAY_AUTH_MODE=token)"
                raise StudioError(f"cannot start or join Ray at {where}: {str(exc).splitlines()[0]}{hint}") from None
            self.started_ray = True
        self.cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.workers, self.threads = thread_budget(self.requested_workers or self.cpus, self.cpus,
                                                   self.requested_threads)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        if len(nodes) > 1:
            self.notes.append(f"the cluster has {len(nodes)} nodes: every node must read the inputs and write --out "
                              "at the same paths (shared storage), or outputs land on the node that made them")

    def describe(self) -> dict:
        self.connect()
        info = {"kind": self.kind, "workers": self.workers, "threads_per_worker": self.threads,
                "cluster_cpus": self.cpus, "address": self.address or "local"}
        if self.notes:
            info["notes"] = list(self.notes)
        return info

    def run(self, tasks: list[dict], on_event: EventCallback) -> None:
        ray = _ray()
        self.connect()
        sink_name = f"studio-batch-sink-{uuid.uuid4().hex[:12]}"
        sink = ray.remote(num_cpus=0)(_Sink).options(name=sink_name).remote()
        actor_cls = ray.remote(num_cpus=self.threads, max_restarts=MAX_ATTEMPTS - 1,
                               max_task_retries=MAX_ATTEMPTS - 1)(_Worker)
        actors = [actor_cls.remote(sink_name, self.threads) for _ in range(min(self.workers, len(tasks)))]
        self.actors = actors
        free = list(actors)
        pending = list(tasks)
        running: dict = {}  # ObjectRef -> (actor, task)

        def drain() -> None:
            for event in ray.get(sink.drain.remote()):
                on_event(event)

        try:
            while pending or running:
                while free and pending:
                    actor, task = free.pop(0), pending.pop(0)
                    running[actor.annotate.remote(task)] = (actor, task)
                ready, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S)
                drain()
                for ref in ready:
                    actor, task = running.pop(ref)
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayActorError as exc:
                        reason = f"Ray worker died {MAX_ATTEMPTS} times: {str(exc).splitlines()[0][:200]}"
                        result = {"status": "failed", "reason": reason}
                        actor = actor_cls.remote(sink_name, self.threads)  # a fresh one for the next video
                        actors.append(actor)
                    except ray.exceptions.RayError as exc:
                        result = {"status": "failed", "reason": f"Ray: {str(exc).splitlines()[0][:200]}"}
                    drain()  # its last progress before its result
                    event = {"type": "finished", "index": task["index"], "result": result, **task_tag(task)}
                    pending.extend(on_event(event) or ())  # a finished chunk may make its video's merge due
                    free.append(actor)
        except BaseException:  # Ctrl-C or an error of the driver
            if not self.started_ray:  # (close() shuts a local cluster down whole, quietly)
                self._kill(ray, actors, sink)
            raise
        self._kill(ray, actors, sink)

    @staticmethod
    def _kill(ray, actors: list, sink) -> None:
        for actor in actors:
            ray.kill(actor, no_restart=True)
        ray.kill(sink, no_restart=True)

    def close(self) -> None:
        """Shut down the cluster this executor started (a joined cluster keeps running)."""
        if self.started_ray:
            _ray().shutdown()
            self.started_ray = False

