"""LLMasOS for Python: a typed client for the ``llmasos serve`` daemon.

Example::

    from llmasos import Client, TrainingTask

    client = Client()                                   # $LLMASOS_HOST or http://127.0.0.1:8080
    print(client.generate_text("Name three colours.", max_tokens=24).text)
    for chunk in client.chat([{"role": "user", "content": "Hello"}], stream=True):
        print(chunk.text, end="")
    vectors = client.embed(["first", "second"])
    model = client.load_model("smollm2-135m-instruct:q4_1")
    print(model.predict(["2+2?", "3+3?"], max_tokens=8))

See the package README for every method and error.
"""
from .client import DEFAULT_BASE_URL, DEFAULT_MODEL, GENERATION_OPTIONS, Client, Model, Stream
from .errors import (AuthenticationError, BadRequest, Conflict, ConnectionFailed, LLMasOSError, NotFound,
                     NotImplementedByServer, PermissionDenied, RateLimited, ServerError, StreamError, Unavailable)
from .types import (TASK_STATES, TERMINAL_TASK_STATES, BatchTask, Chunk, Completion, Message, ModelInfo, ProcessInfo,
                    PullProgress, Task, TaskProgress, TaskStatus, TrainingTask, Usage)

__version__ = "0.1.0"

__all__ = [
    "Client", "Model", "Stream", "DEFAULT_BASE_URL", "DEFAULT_MODEL", "GENERATION_OPTIONS",
    "LLMasOSError", "BadRequest", "AuthenticationError", "PermissionDenied", "NotFound", "Conflict",
    "RateLimited", "ServerError", "Unavailable", "NotImplementedByServer", "StreamError", "ConnectionFailed",
    "Message", "Usage", "Completion", "Chunk", "ModelInfo", "PullProgress", "ProcessInfo", "TrainingTask", "BatchTask", "Task",
    "TaskProgress", "TaskStatus", "TASK_STATES", "TERMINAL_TASK_STATES",
]
