"""The typed values the client returns and takes: results, stream chunks, models, processes,
training and batch tasks. Each result keeps the server's decoded JSON in ``raw`` for fields this package
does not name."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Sequence, TypedDict, Union

__all__ = [
    "Message",
    "Usage",
    "Completion",
    "Chunk",
    "ModelInfo",
    "PullProgress",
    "ProcessInfo",
    "TrainingTask",
    "BatchTask",
    "Task",
    "TaskProgress",
    "TaskStatus",
    "TASK_STATES",
    "TERMINAL_TASK_STATES",
]


class Message(TypedDict):
    """A chat message: ``{"role": "system" | "user" | "assistant", "content": "..."}``."""

    role: str
    content: str


@dataclass(frozen=True)
class Usage:
    """Token counts of one generation."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @staticmethod
    def from_json(j: Optional[Mapping[str, Any]]) -> Optional["Usage"]:
        if not isinstance(j, Mapping):
            return None
        prompt = int(j.get("prompt_tokens") or 0)
        completion = int(j.get("completion_tokens") or 0)
        return Usage(prompt, completion, int(j.get("total_tokens") or prompt + completion))


@dataclass(frozen=True)
class Completion:
    """A complete (non-streamed) generation.

    Attributes:
        text: the generated text.
        finish_reason: ``"stop"`` (end of generation or a stop string) or ``"length"``
            (``max_tokens``, or the context is full).
        usage: prompt and generated token counts.
        model: the model as the request named it.
        id: the response id (``chatcmpl-...`` or ``cmpl-...``).
    """

    text: str
    finish_reason: Optional[str]
    usage: Optional[Usage]
    model: str = ""
    id: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Chunk:
    """One piece of a streamed generation. ``text`` may be empty on the last chunks, which
    carry ``finish_reason`` and then ``usage``; joining every chunk's ``text`` gives the
    complete answer."""

    text: str
    finish_reason: Optional[str] = None
    usage: Optional[Usage] = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class ModelInfo:
    """An installed model reference (one per tag, and one per ``name@version``).

    Attributes:
        name: the reference to use in requests (``smollm2-135m-instruct:q4_1``, ``tiny@1.0.0``).
        digest: the SHA-256 of the GGUF file, hex.
        size: the file's size in bytes.
        modified_at: when the version was installed (RFC 3339).
        family: the architecture family (``llama``, ``qwen2``, ...).
        quantization: the weight type (``Q4_1``, ``Q8_0``, ...).
    """

    name: str
    digest: str
    size: int
    modified_at: str = ""
    family: str = ""
    quantization: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @staticmethod
    def from_json(j: Mapping[str, Any]) -> "ModelInfo":
        details = j.get("details") if isinstance(j.get("details"), Mapping) else {}
        assert isinstance(details, Mapping)
        return ModelInfo(name=str(j.get("name") or j.get("model") or ""), digest=str(j.get("digest") or ""),
                         size=int(j.get("size") or 0), modified_at=str(j.get("modified_at") or ""),
                         family=str(details.get("family") or ""),
                         quantization=str(details.get("quantization_level") or ""), raw=dict(j))


@dataclass(frozen=True)
class PullProgress:
    """A line of a pull's progress: ``status`` (``pulling manifest``, ``downloading``,
    ``verifying sha256 digest``, ..., ``success``) and, while bytes move, ``completed`` of
    ``total``."""

    status: str
    digest: Optional[str] = None
    total: Optional[int] = None
    completed: Optional[int] = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @staticmethod
    def from_json(j: Mapping[str, Any]) -> "PullProgress":
        total = j.get("total")
        completed = j.get("completed")
        digest = j.get("digest")
        return PullProgress(status=str(j.get("status") or ""), digest=str(digest) if digest else None,
                            total=int(total) if total is not None else None,
                            completed=int(completed) if completed is not None else None, raw=dict(j))


@dataclass(frozen=True)
class ProcessInfo:
    """A live process of the daemon's process table (``GET /os/processes``).

    Attributes:
        id: the global id ``INSTANCE-PID`` that :meth:`Client.kill` and :meth:`Client.renice` take.
        model, version: the model version its instance runs.
        tenant: the request's tenant.
        kind: ``generate`` or ``embed``.
        state: ``queued``, ``running`` or ``preempted``.
        priority: higher runs first under the ``priority`` policy.
        prompt_tokens, generated_tokens, max_tokens: its tokens so far and its limit.
        kv_blocks_resident, kv_blocks_swapped: its KV blocks on the device and in swap.
    """

    id: str
    model: str
    version: str
    tenant: str
    kind: str
    state: str
    priority: int
    prompt_tokens: int = 0
    generated_tokens: int = 0
    max_tokens: int = 0
    kv_blocks_resident: int = 0
    kv_blocks_swapped: int = 0
    preemptions: int = 0
    age_seconds: float = 0.0
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @staticmethod
    def from_json(j: Mapping[str, Any]) -> "ProcessInfo":
        kv = j.get("kv_blocks") if isinstance(j.get("kv_blocks"), Mapping) else {}
        assert isinstance(kv, Mapping)
        return ProcessInfo(
            id=str(j.get("id", "")), model=str(j.get("model", "")), version=str(j.get("version", "")),
            tenant=str(j.get("tenant", "")), kind=str(j.get("kind", "")), state=str(j.get("state", "")),
            priority=int(j.get("priority") or 0), prompt_tokens=int(j.get("prompt_tokens") or 0),
            generated_tokens=int(j.get("generated_tokens") or 0), max_tokens=int(j.get("max_tokens") or 0),
            kv_blocks_resident=int(kv.get("resident") or 0), kv_blocks_swapped=int(kv.get("swapped") or 0),
            preemptions=int(j.get("preemptions") or 0), age_seconds=float(j.get("age_seconds") or 0.0),
            raw=dict(j))


@dataclass
class TrainingTask:
    """A LoRA fine-tuning task for :meth:`Client.submit_task`; the fields mirror
    ``llmasos finetune``'s flags, and those left as None take the daemon's defaults.

    ``dataset_path`` is a JSONL file (chat ``messages`` or ``prompt``/``completion`` lines)
    that the *daemon* reads; a relative path is made absolute here, so it must be on the
    daemon's machine.

    Example::

        task = TrainingTask(model_name="smollm2-135m-instruct:q4_1", dataset_path="facts.jsonl",
                            epochs=3, rank=8, learning_rate=1e-3, adapter_name="smol-facts")
    """

    model_name: str
    dataset_path: Union[str, "os.PathLike[str]"]
    epochs: Optional[int] = None
    steps: Optional[int] = None
    learning_rate: Optional[float] = None
    rank: Optional[int] = None
    alpha: Optional[float] = None
    dropout: Optional[float] = None
    targets: Optional[Sequence[str]] = None
    batch_size: Optional[int] = None
    max_length: Optional[int] = None
    warmup_steps: Optional[int] = None
    weight_decay: Optional[float] = None
    eval_split: Optional[float] = None
    checkpoint_every: Optional[int] = None
    seed: Optional[int] = None
    adapter_name: Optional[str] = None

    def to_json(self) -> Dict[str, Any]:
        """The body of ``POST /os/jobs``: ``{"kind": "finetune", "model", "data", ...}`` with
        the hyper-parameters named as ``llmasos finetune``'s flags (``lr``, ``batch``,
        ``max_len``, ...); fields left as None are left out.

        >>> TrainingTask("m", "/d.jsonl", epochs=2, learning_rate=0.001).to_json()
        {'kind': 'finetune', 'model': 'm', 'data': '/d.jsonl', 'epochs': 2, 'lr': 0.001}
        """
        if not self.model_name:
            raise ValueError("TrainingTask.model_name must name a model")
        path = os.fspath(self.dataset_path)
        if not path:
            raise ValueError("TrainingTask.dataset_path must name a JSONL file")
        body: Dict[str, Any] = {"kind": "finetune", "model": self.model_name, "data": os.path.abspath(path)}
        names = {"epochs": "epochs", "steps": "steps", "learning_rate": "lr", "rank": "rank", "alpha": "alpha",
                 "dropout": "dropout", "batch_size": "batch", "max_length": "max_len", "warmup_steps": "warmup",
                 "weight_decay": "weight_decay", "eval_split": "eval_split",
                 "checkpoint_every": "checkpoint_every", "seed": "seed", "adapter_name": "name"}
        for attr, key in names.items():
            value = getattr(self, attr)
            if value is not None:
                body[key] = value
        if self.targets is not None:
            body["targets"] = list(self.targets)
        return body


@dataclass
class BatchTask:
    """A file of prompts for :meth:`Client.submit_task`: the JSONL file ``llmasos batch``
    reads (``{"id", "prompt" | "messages", "raw", "max_tokens", ...}`` per line), answered by
    ``model_name`` on the daemon at a low priority, its results appended to ``output_path`` as
    JSON lines (``{"id", "text", "finish_reason", ...}``) as they finish.

    ``input_path`` and ``output_path`` are on the *daemon's* machine; relative paths are made
    absolute here. ``options`` are defaults for every line (``max_tokens``, ``temperature``,
    ``top_k``, ``top_p``, ``min_p``, ``repeat_penalty``, ``presence_penalty``,
    ``frequency_penalty``, ``seed``, ``stop``); ``parallel`` bounds the prompts in flight
    (the daemon's default: 2). Progress counts answered prompts: ``step`` of ``total_steps``.

    Example::

        task = BatchTask(model_name="smollm2-135m-instruct:q4_1", input_path="questions.jsonl",
                         output_path="answers.jsonl", options={"temperature": 0})
    """

    model_name: str
    input_path: Union[str, "os.PathLike[str]"]
    output_path: Union[str, "os.PathLike[str]"]
    options: Optional[Mapping[str, Any]] = None
    parallel: Optional[int] = None

    def to_json(self) -> Dict[str, Any]:
        """The body of ``POST /os/jobs``: ``{"kind": "batch", "model", "input", "output", ...}``.

        >>> BatchTask("m", "/p.jsonl", "/r.jsonl", options={"temperature": 0}).to_json()
        {'kind': 'batch', 'model': 'm', 'input': '/p.jsonl', 'output': '/r.jsonl', 'options': {'temperature': 0}}
        """
        if not self.model_name:
            raise ValueError("BatchTask.model_name must name a model")
        paths = {}
        for attr in ("input_path", "output_path"):
            path = os.fspath(getattr(self, attr))
            if not path:
                raise ValueError(f"BatchTask.{attr} must name a file")
            paths[attr] = os.path.abspath(path)
        body: Dict[str, Any] = {"kind": "batch", "model": self.model_name, "input": paths["input_path"],
                                "output": paths["output_path"]}
        if self.options is not None:
            body["options"] = dict(self.options)
        if self.parallel is not None:
            body["parallel"] = self.parallel
        return body


# What Client.submit_task takes.
Task = Union[TrainingTask, BatchTask]


TASK_STATES = ("queued", "running", "paused", "succeeded", "failed", "cancelled")
TERMINAL_TASK_STATES = frozenset({"succeeded", "failed", "cancelled"})


@dataclass(frozen=True)
class TaskProgress:
    """How far a training task is: optimiser ``step`` of ``total_steps``, ``epoch``, the last
    ``loss``, ``tokens_per_second`` and the estimated ``seconds_left``."""

    step: Optional[int] = None
    total_steps: Optional[int] = None
    epoch: Optional[float] = None
    loss: Optional[float] = None
    tokens_per_second: Optional[float] = None
    seconds_left: Optional[float] = None

    @staticmethod
    def from_json(j: Any) -> Optional["TaskProgress"]:
        if not isinstance(j, Mapping):
            return None

        def num(key: str, kind: Any) -> Any:
            value = j.get(key)
            return kind(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

        return TaskProgress(step=num("step", int), total_steps=num("total_steps", int), epoch=num("epoch", float),
                            loss=num("loss", float), tokens_per_second=num("tokens_per_second", float),
                            seconds_left=num("seconds_left", float))


@dataclass(frozen=True)
class TaskStatus:
    """A training task as ``GET /os/jobs/{id}`` describes it.

    Attributes:
        id: the task id.
        state: one of ``queued``, ``running``, ``paused``, ``succeeded``, ``failed``, ``cancelled``.
        progress: how far it is (None before it starts).
        adapter: the registry reference of the adapter it made, once it succeeded.
        error: why it failed, if it did.
    """

    id: str
    state: str
    progress: Optional[TaskProgress] = None
    adapter: Optional[str] = None
    error: Optional[str] = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def done(self) -> bool:
        """True once the task can change no more (succeeded, failed or cancelled)."""
        return self.state in TERMINAL_TASK_STATES

    @staticmethod
    def from_json(j: Mapping[str, Any]) -> "TaskStatus":
        adapter = j.get("adapter")
        error = j.get("error")
        return TaskStatus(id=str(j.get("id", "")), state=str(j.get("state", "")),
                          progress=TaskProgress.from_json(j.get("progress")),
                          adapter=adapter if isinstance(adapter, str) else None,
                          error=str(error) if error else None, raw=dict(j))

