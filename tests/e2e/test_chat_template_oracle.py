"""Oracle test for model/chat: our native renderer against jinja2 running the real templates.

Each template below is rendered by jinja2 the way Hugging Face transformers renders chat
templates (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols,
raise_exception) and by build/chat_template_tool; the two must be byte-identical. Where
jinja2 raises (a role the template refuses), our tool must fail too.

The template texts are the public tokenizer_config.json chat templates of the named models;
SmolLM2's is read from the GGUF file the project runs by default.
"""

import functools
import json
import os
import pathlib
import subprocess

import jinja2
import jinja2.ext
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from oracle_inputs import default_model, require

BUILD_DIR = pathlib.Path(os.environ.get("LLMASOS_BUILD_DIR", "build"))
TOOL = BUILD_DIR / "chat_template_tool"
SMOLLM2_GGUF = default_model()  # where scripts/setup installs it

# meta-llama/Meta-Llama-3-8B-Instruct
LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)

# meta-llama/Llama-2-7b-chat-hf. Its newlines are written as the escape \n inside the Jinja
# literals (as in the JSON file), which exercises the literal decoding too.
LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}"
    "{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}"
    "{% endif %}{% endfor %}"
)

# HuggingFaceH4/zephyr-7b-beta (and TinyLlama-1.1B-Chat): block tags on their own lines, so
# trim_blocks decides the whitespace.
ZEPHYR = (
    "{% for message in messages %}\n"
    "{% if message['role'] == 'user' %}\n"
    "{{ '<|user|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'system' %}\n"
    "{{ '<|system|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'assistant' %}\n"
    "{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n"
    "{% endif %}\n"
    "{% if loop.last and add_generation_prompt %}\n"
    "{{ '<|assistant|>' }}\n"
    "{% endif %}\n"
    "{% endfor %}"
)

# google/gemma-7b-it (gemma-2-*-it ships the same turns)
GEMMA = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}"
    "{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)

# Qwen/Qwen2-7B-Instruct: ChatML with a default system prompt.
QWEN2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# teknium/OpenHermes-2.5-Mistral-7B: plain ChatML, no default system prompt.
CHATML_PLAIN = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Qwen/Qwen2.5-7B-Instruct: ChatML with whitespace control, a tools branch (not taken without
# tools), a default system prompt, and tool messages folded into user turns. Written raw, as
# in the JSON file: the \n inside the literals are Jinja escapes.
QWEN25 = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""

# name -> (template text, bos, eos, family name for FromName)
TEMPLATES = {
    "llama3": (LLAMA3, "<|begin_of_text|>", "<|end_of_text|>", "llama3"),
    "llama2": (LLAMA2, "<s>", "</s>", "llama2"),
    "zephyr": (ZEPHYR, "<s>", "</s>", "zephyr"),
    "gemma": (GEMMA, "<bos>", "<eos>", "gemma"),
    "qwen2": (QWEN2, "", "<|endoftext|>", None),
    "qwen2.5": (QWEN25, "", "<|im_end|>", None),
    "chatml": (CHATML_PLAIN, "<s>", "<|im_end|>", "chatml"),
}


def smollm2_template():
    require(SMOLLM2_GGUF, "the default model")
    import gguf

    reader = gguf.GGUFReader(str(SMOLLM2_GGUF))
    field = reader.fields["tokenizer.chat_template"]
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def M(role, content):
    return {"role": role, "content": content}


# Every code point Python's str.strip() removes (what Jinja's trim and .strip() call), and some
# that look blank but are not whitespace to Python.
PY_WHITESPACE = "".join(chr(c) for c in range(0x110000) if chr(c).isspace())
NOT_WHITESPACE = "\u200b\u2060\ufeff\u180e\u00ad\u2800"


CONVERSATIONS = {
    "single_user": [M("user", "Hello")],
    "system_user": [M("system", "You are terse."), M("user", "Hi")],
    "multi_turn_system": [
        M("system", "You answer in French."),
        M("user", "What is 2+2?"),
        M("assistant", "Quatre."),
        M("user", "And 3+3?"),
    ],
    "multi_turn_no_system": [
        M("user", "one"),
        M("assistant", "two"),
        M("user", "three"),
        M("assistant", "four"),
    ],
    "whitespace": [
        M("user", "  leading and trailing  \n"),
        M("assistant", "\n\nanswer\n\n"),
        M("user", "\tq\t\r\n"),
    ],
    "whitespace_system": [
        M("system", "  padded system \n"),
        M("user", " \n padded user \n "),
        M("assistant", " a "),
        M("user", "x"),
    ],
    "whitespace_only_user_after_system": [M("system", "sys"), M("user", "  \n ")],
    "unicode": [
        M("user", "Grüße, 世界! 🚀"),
        M("assistant", "Привет\u3000"),
        M("user", "\u00a0nbsp and ideographic\u3000space\u2028"),
    ],
    "all_python_whitespace": [
        M("user", PY_WHITESPACE + "x" + PY_WHITESPACE + "y" + PY_WHITESPACE),
        M("assistant", PY_WHITESPACE),
        M("user", NOT_WHITESPACE + " z " + NOT_WHITESPACE),
    ],
    "unicode_not_space": [M("user", "\u200bzero width\u200b"), M("assistant", "\ufeffbom")],
    "inner_newlines": [M("user", "line1\nline2\n\nline3"), M("assistant", "a\n\n\nb")],
    "empty_content": [M("user", ""), M("assistant", ""), M("user", "")],
    "template_lookalikes": [
        M("user", "{{ not jinja }} {% if %} <|im_start|>user [INST] <start_of_turn>"),
        M("assistant", "<|eot_id|></s><end_of_turn>"),
    ],
    "quotes_backslashes": [M("user", "He said \"hi\" \\n \\' '\n"), M("assistant", "C:\\path\\")],
    "ends_with_assistant": [M("user", "Tell me a joke"), M("assistant", "No.")],
    "long": [M("user" if i % 2 == 0 else "assistant", f"turn {i} " * (i + 1)) for i in range(12)],
    "tool_role": [M("user", "call it"), M("assistant", "calling"), M("tool", "42")],
    "tool_run": [M("user", "weather?"), M("assistant", "calling"), M("tool", "{\"t\": 21}"),
                 M("tool", "sunny"), M("user", "thanks"), M("tool", "late")],
    "system_late": [M("user", "a"), M("system", "late system"), M("assistant", "b")],
    "assistant_first": [M("assistant", "I start"), M("user", "ok")],
    "two_users": [M("user", "a"), M("user", "b")],
}


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


@functools.lru_cache(maxsize=None)
def compile_template(template):
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template)


def jinja_render(template, messages, add_generation_prompt, bos, eos):
    return compile_template(template).render(
        messages=messages,
        add_generation_prompt=add_generation_prompt,
        bos_token=bos,
        eos_token=eos,
    )


def tool_render(request):
    if not TOOL.exists():
        pytest.fail(f"{TOOL} is missing: build the chat_template_tool target first")
    proc = subprocess.run(
        [str(TOOL)], input=json.dumps(request).encode(), capture_output=True, timeout=30
    )
    return proc.returncode, proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8")


def compare_all(template, bos, eos, name=None):
    """Renders every conversation both ways; returns (number matched, number refused)."""
    matched = refused = 0
    for conv_name, messages in CONVERSATIONS.items():
        for agp in (False, True):
            where = f"conversation {conv_name!r}, add_generation_prompt={agp}"
            try:
                expected = jinja_render(template, messages, agp, bos, eos)
            except jinja2.exceptions.TemplateError:
                expected = None
            request = {"template": template, "bos": bos, "messages": messages,
                       "add_generation_prompt": agp}
            if name is not None:
                request = {"template": None, "name": name, "messages": messages,
                           "add_generation_prompt": agp}
            rc, out, err = tool_render(request)
            if expected is None:
                assert rc == 1, f"{where}: jinja2 refuses it but we rendered {out!r}"
                assert err.strip(), f"{where}: failed without a message"
                refused += 1
                continue
            # A template that silently drops a role it does not know (zephyr, llama2 with a
            # tool message) renders something; we refuse instead of dropping text.
            if rc == 1 and any(m["role"] not in ("system", "user", "assistant") for m in messages):
                refused += 1
                continue
            assert rc == 0, f"{where}: jinja2 renders it but we failed: {err}"
            assert out == expected, f"{where}:\n ours  {out!r}\n jinja {expected!r}"
            matched += 1
    return matched, refused


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_matches_jinja(name):
    template, bos, eos, _ = TEMPLATES[name]
    matched, refused = compare_all(template, bos, eos)
    # Most conversations are valid for every family; a test that compared nothing proves nothing.
    assert matched >= 16, f"only {matched} renderings compared ({refused} refused)"


@pytest.mark.parametrize("name", [n for n in sorted(TEMPLATES) if TEMPLATES[n][3]])
def test_from_name_matches_jinja_with_the_family_default_bos(name):
    template, _, eos, family = TEMPLATES[name]
    default_bos = {"llama3": "<|begin_of_text|>", "llama2": "<s>", "gemma": "<bos>"}.get(family, "")
    matched, _ = compare_all(template, default_bos, eos, name=family)
    assert matched >= 16


def test_smollm2_gguf_template_matches_jinja():
    template = smollm2_template()
    assert "<|im_start|>" in template
    matched, refused = compare_all(template, "<|im_start|>", "<|im_end|>")
    assert matched >= 30 and refused == 0
    # The default system prompt is inserted exactly when the first message is not a system one.
    rc, out, _ = tool_render({"template": template, "bos": "", "messages": [M("user", "Hi")],
                              "add_generation_prompt": True})
    assert rc == 0 and "named SmolLM, trained by Hugging Face" in out


@pytest.mark.parametrize("name", ["llama3", "gemma", "qwen2", "chatml", "zephyr"])
def test_pieces_join_to_jinja_and_carry_the_content_as_python_strips_it(name):
    template, bos, eos, _ = TEMPLATES[name]
    trims = name in ("llama3", "gemma")
    checked = 0
    for conv_name, messages in CONVERSATIONS.items():
        try:
            expected = jinja_render(template, messages, True, bos, eos)
        except jinja2.exceptions.TemplateError:
            continue
        rc, out, err = tool_render({"template": template, "bos": bos, "messages": messages,
                                    "add_generation_prompt": True, "pieces": True})
        if rc == 1 and any(m["role"] not in ("system", "user", "assistant") for m in messages):
            continue
        assert rc == 0, err
        pieces = json.loads(out)
        assert "".join(p["text"] for p in pieces) == expected, conv_name
        want = [m["content"].strip() if trims else m["content"] for m in messages]
        assert [p["text"] for p in pieces if p["content"]] == [w for w in want if w], conv_name
        checked += 1
    assert checked >= 10


UNSUPPORTED = {
    # mistralai/Mistral-7B-Instruct-v0.1: [INST] without <<SYS>> and different spacing.
    "mistral": (
        "{{ bos_token }}{% for message in messages %}"
        "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
        "{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
        "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
        "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}"
        "{% endif %}{% endfor %}",
        "Mistral",
    ),
    # microsoft/Phi-3-mini-4k-instruct: <|user|> turns ended by <|end|>.
    "phi3": (
        "{% for message in messages %}{% if message['role'] == 'system' %}"
        "{{'<|system|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}"
        "{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}"
        "{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}",
        "Phi-3",
    ),
    # Alpaca-style: no known marker at all.
    "alpaca": (
        "{% for message in messages %}{% if message['role'] == 'user' %}"
        "{{ '### Instruction:\n' + message['content'] + '\n\n' }}{% else %}"
        "{{ '### Response:\n' + message['content'] + '\n\n' }}{% endif %}{% endfor %}",
        "not recognised",
    ),
}


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_unsupported_templates_are_refused_by_name(name):
    template, needle = UNSUPPORTED[name]
    rc, out, err = tool_render({"template": template, "messages": [M("user", "hi")],
                                "add_generation_prompt": True})
    assert rc == 1 and out == ""
    assert "UNIMPLEMENTED" in err and needle in err, err


@pytest.mark.parametrize(
    "request_, needle",
    [
        ({"template": "", "messages": [M("user", "x")]}, "no chat template"),
        ({"template": None, "name": "nope", "messages": [M("user", "x")]}, "unknown chat template"),
        ({"template": None, "name": "chatml", "messages": []}, "no messages"),
        ({"template": None, "name": "chatml", "messages": [{"role": "user"}]}, "content"),
        ({"template": None, "name": "chatml", "messages": [M("user", "x")],
          "add_generation_prompt": "yes"}, "add_generation_prompt"),
    ],
)
def test_bad_requests_fail_with_a_message(request_, needle):
    rc, out, err = tool_render(request_)
    assert rc == 1 and out == ""
    assert needle in err, err
