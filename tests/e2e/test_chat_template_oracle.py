"""Oracle test for model/chat: our Jinja interpreter against jinja2 on real chat templates.

Every template in tests/data/chat_templates/ (see SOURCES.md there) is rendered by jinja2 the
way Hugging Face transformers renders chat templates (ImmutableSandboxedEnvironment,
trim_blocks, lstrip_blocks, loop controls, the {% generation %} tag, raise_exception,
strftime_now, and transformers' own tojson) and by build/chat_template_tool; the two must be
byte-identical, and where jinja2 raises our tool must fail with a message. The conversations
cover system messages, multi-turn, add_generation_prompt on and off, tool definitions, tool
calls and tool results, whitespace and Unicode edge cases.

The tool is asked for pieces, so each comparison also checks that caller text (marked with
SENTINEL in some conversations and tools) only ever lands in content pieces, where special
tokens are not parsed.
"""

import datetime
import functools
import json
import os
import pathlib
import subprocess

import jinja2
import jinja2.ext
import jinja2.nodes
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from oracle_inputs import default_model, require

BUILD_DIR = pathlib.Path(os.environ.get("LLMASOS_BUILD_DIR", "build"))
TOOL = BUILD_DIR / "chat_template_tool"
TEMPLATE_DIR = pathlib.Path(__file__).resolve().parents[1] / "data" / "chat_templates"
SMOLLM2_GGUF = default_model()  # where scripts/setup installs it
NOW = 1_721_952_000  # 26 Jul 2024, for strftime_now on both sides

TEMPLATES = {p.stem: p.read_text(encoding="utf-8") for p in sorted(TEMPLATE_DIR.glob("*.jinja"))}

# bos_token and eos_token of each template's model.
LLAMA3 = ("<|begin_of_text|>", "<|eot_id|>")
SPECIAL = {
    "chatml": ("<s>", "<|im_end|>"),
    "command-r7b-abridged": ("<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>"),
    "deepseek-r1-distill": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    "deepseek-v3.1": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    "gemma-7b": ("<bos>", "<eos>"),
    "gemma3": ("<bos>", "<eos>"),
    "llama2": ("<s>", "</s>"),
    "llama3": LLAMA3,
    "llama3.1": LLAMA3,
    "llama3.2-generation": LLAMA3,
    "mistral-nemo": ("<s>", "</s>"),
    "mistral-v0.1": ("<s>", "</s>"),
    "mistral-v0.3": ("<s>", "</s>"),
    "phi3": ("<s>", "<|endoftext|>"),
    "phi3.5": ("<s>", "<|endoftext|>"),
    "phi4": ("<|endoftext|>", "<|im_end|>"),
    "phi4-mini": ("<|endoftext|>", "<|endoftext|>"),
    "qwen2": ("", "<|endoftext|>"),
    "qwen2.5": ("", "<|im_end|>"),
    "qwen3": ("", "<|im_end|>"),
    "smollm2": ("<|im_start|>", "<|im_end|>"),
    "zephyr": ("<s>", "</s>"),
}


def M(role, content):
    return {"role": role, "content": content}


def call(name, arguments, call_id="call12345"):
    # The key order our tool builds: id, type, function{name, arguments}.
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def assistant_calls(content, *calls):
    return {"role": "assistant", "content": content, "tool_calls": list(calls)}


def tool_result(content, call_id="call12345", name="get_weather"):
    return {"role": "tool", "content": content, "tool_call_id": call_id, "name": name}


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
    "multi_turn_no_system": [M("user", "one"), M("assistant", "two"), M("user", "three"),
                             M("assistant", "four")],
    "whitespace": [M("user", "  leading and trailing  \n"), M("assistant", "\n\nanswer\n\n"),
                   M("user", "\tq\t\r\n")],
    "whitespace_system": [M("system", "  padded system \n"), M("user", " \n padded user \n "),
                          M("assistant", " a "), M("user", "x")],
    "whitespace_only_user_after_system": [M("system", "sys"), M("user", "  \n ")],
    "unicode": [M("user", "Grüße, 世界! 🚀"), M("assistant", "Привет\u3000"),
                M("user", "\u00a0nbsp and ideographic\u3000space\u2028")],
    "all_python_whitespace": [
        M("user", PY_WHITESPACE + "x" + PY_WHITESPACE + "y" + PY_WHITESPACE),
        M("assistant", PY_WHITESPACE),
        M("user", NOT_WHITESPACE + " z " + NOT_WHITESPACE),
    ],
    "inner_newlines": [M("user", "line1\nline2\n\nline3"), M("assistant", "a\n\n\nb")],
    "empty_content": [M("user", ""), M("assistant", ""), M("user", "")],
    "template_lookalikes": [
        M("system", "SENTINEL <|im_start|>system"),
        M("user", "SENTINEL {{ not jinja }} {% if %} <|im_start|>user [INST] <start_of_turn>"),
        M("assistant", "SENTINEL <|eot_id|></s><end_of_turn><|end|>"),
        M("user", "SENTINEL <｜User｜>"),
    ],
    "quotes_backslashes": [M("user", "He said \"hi\" \\n \\' '\n"), M("assistant", "C:\\path\\")],
    "ends_with_assistant": [M("user", "Tell me a joke"), M("assistant", "No.")],
    "long": [M("user" if i % 2 == 0 else "assistant", f"turn {i} " * (i + 1)) for i in range(12)],
    "tool_role": [M("user", "call it"), M("assistant", "calling"), M("tool", "42")],
    "system_late": [M("user", "a"), M("system", "late system"), M("assistant", "b")],
    "assistant_first": [M("assistant", "I start"), M("user", "ok")],
    "two_users": [M("user", "a"), M("user", "b")],
    "thinking": [M("user", "2+2?"), M("assistant", "<think>\nadd them\n</think>\n\n4"),
                 M("user", "and 3+3?")],
    "thinking_last": [M("user", "2+2?"), M("assistant", "<think>\nadd them\n</think>\n\n4")],
    # Tool calling (OpenAI shape; arguments as a mapping, as transformers expects).
    "tool_call_and_result": [
        M("system", "Use the tools."),
        M("user", "Weather in Paris?"),
        assistant_calls(None, call("get_weather", {"city": "Paris", "unit": "c"})),
        tool_result("{\"temp\": 21.5, \"sky\": \"SENTINEL\"}"),
    ],
    "tool_call_then_answer": [
        M("user", "Weather in Paris?"),
        assistant_calls(None, call("get_weather", {"city": "Paris"})),
        tool_result("21 C"),
        M("assistant", "It is 21 C in Paris."),
        M("user", "Thanks"),
    ],
    "tool_call_with_text": [
        M("user", "Weather in Oslo and Rome?"),
        assistant_calls("Let me check.", call("get_weather", {"city": "Oslo"}),
                        call("get_weather", {"city": "Rome"}, "call67890")),
        tool_result("-3 C"),
        tool_result("18 C", "call67890"),
    ],
    "tool_call_empty_content": [
        M("user", "Time?"),
        assistant_calls("", call("get_time", {"zone": "UTC", "precise": True, "n": 3.0})),
        tool_result("12:00", name="get_time"),
    ],
}

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather",
        "description": "Current weather for a city. SENTINEL <|im_start|>",
        "parameters": {"type": "object",
                       "properties": {"city": {"type": "string", "description": "City name"},
                                      "unit": {"type": "string", "enum": ["c", "f"]}},
                       "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "get_time", "description": "Time in a zone, e.g. \"UTC\" or 'CET'",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
        "return": {"type": "string"}}},
]
TOOL_CONVERSATIONS = {"single_user", "system_user", "multi_turn_system", "template_lookalikes",
                      "tool_call_and_result", "tool_call_then_answer", "tool_call_with_text",
                      "tool_call_empty_content"}


# ---- jinja2 configured as transformers configures it ----

def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def strftime_now(fmt):
    return datetime.datetime.fromtimestamp(NOW).strftime(fmt)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


class Generation(jinja2.ext.Extension):
    """{% generation %}...{% endgeneration %}: renders its body unchanged."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


@functools.lru_cache(maxsize=None)
def compile_template(template):
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols, Generation])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(template)


def jinja_render(template, messages, add_generation_prompt, bos, eos, tools=None):
    return compile_template(template).render(
        messages=messages, tools=tools, documents=None,
        add_generation_prompt=add_generation_prompt, bos_token=bos, eos_token=eos)


def tool_run(request):
    if not TOOL.exists():
        pytest.fail(f"{TOOL} is missing: build the chat_template_tool target first")
    proc = subprocess.run([str(TOOL)], input=json.dumps(request).encode(), capture_output=True,
                          timeout=30)
    return proc.returncode, proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8")


def compare(template, bos, eos, conversations, with_tools):
    """Renders each conversation both ways; returns (number matched, number refused by both)."""
    matched = refused = 0
    for conv_name in conversations:
        messages = CONVERSATIONS[conv_name]
        for tools in ([None, TOOLS] if with_tools and conv_name in TOOL_CONVERSATIONS else [None]):
            for agp in (False, True):
                where = f"{conv_name!r}, add_generation_prompt={agp}, tools={tools is not None}"
                try:
                    expected = jinja_render(template, messages, agp, bos, eos, tools)
                except (jinja2.exceptions.TemplateError, TypeError) as e:
                    expected, why = None, e
                request = {"template": template, "bos": bos, "eos": eos, "messages": messages,
                           "add_generation_prompt": agp, "now": NOW, "pieces": True}
                if tools is not None:
                    request["tools"] = tools
                rc, out, err = tool_run(request)
                if expected is None:
                    assert rc == 1, f"{where}: jinja2 raised {why!r} but we rendered {out!r}"
                    assert err.strip(), f"{where}: failed without a message"
                    refused += 1
                    continue
                if expected == "":
                    # We refuse an empty prompt; jinja2 returns it.
                    assert rc == 1 and "empty prompt" in err, f"{where}: {err}"
                    continue
                assert rc == 0, f"{where}: jinja2 renders it but we failed: {err}"
                pieces = json.loads(out)
                got = "".join(p["text"] for p in pieces)
                assert got == expected, f"{where}:\n ours  {got!r}\n jinja {expected!r}"
                for p in pieces:
                    assert p["text"], f"{where}: empty piece"
                    if not p["content"]:
                        assert "SENTINEL" not in p["text"], f"{where}: caller text as template: {p}"
                matched += 1
    return matched, refused


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_matches_jinja2(name):
    bos, eos = SPECIAL[name]
    matched, refused = compare(TEMPLATES[name], bos, eos, CONVERSATIONS, with_tools=True)
    # A test that compared nothing proves nothing: every template renders most conversations.
    assert matched >= 10, f"only {matched} renderings compared ({refused} refused by both)"


def test_every_template_has_its_tokens():
    assert sorted(SPECIAL) == sorted(TEMPLATES)


@pytest.mark.parametrize("name", ["llama3.1", "llama3.2-generation", "qwen2.5", "qwen3",
                                  "mistral-v0.3", "mistral-nemo"])
def test_tool_templates_render_the_tool_definitions(name):
    bos, eos = SPECIAL[name]
    rc, out, err = tool_run({"template": TEMPLATES[name], "bos": bos, "eos": eos, "now": NOW,
                             "messages": CONVERSATIONS["tool_call_and_result"], "tools": TOOLS,
                             "add_generation_prompt": True})
    assert rc == 0, err
    assert "get_weather" in out and "Current weather for a city" in out
    assert "Paris" in out


def test_llama3_2_writes_todays_date_from_strftime_now():
    bos, eos = SPECIAL["llama3.2-generation"]
    rc, out, err = tool_run({"template": TEMPLATES["llama3.2-generation"], "bos": bos, "eos": eos,
                             "now": NOW, "messages": [M("user", "hi")],
                             "add_generation_prompt": True})
    assert rc == 0, err
    assert "Today Date: " + strftime_now("%d %b %Y") in out


def test_smollm2_template_in_the_repository_is_the_gguf_one():
    require(SMOLLM2_GGUF, "the default model")
    import gguf

    reader = gguf.GGUFReader(str(SMOLLM2_GGUF))
    field = reader.fields["tokenizer.chat_template"]
    assert bytes(field.parts[field.data[0]]).decode("utf-8") == TEMPLATES["smollm2"]


# ---- the built-in families (FromName), the fallback for files without a template ----

BUILT_INS = {"llama3": "llama3", "llama2": "llama2", "zephyr": "zephyr", "gemma-7b": "gemma",
             "chatml": "chatml"}
FAMILY_BOS = {"llama3": "<|begin_of_text|>", "llama2": "<s>", "gemma": "<bos>"}
PLAIN = [c for c in CONVERSATIONS if not c.startswith("tool_call") and c != "tool_role"]


@pytest.mark.parametrize("name", sorted(BUILT_INS))
def test_built_in_family_matches_its_reference_template(name):
    family = BUILT_INS[name]
    bos = FAMILY_BOS.get(family, "")
    _, eos = SPECIAL[name]
    matched = 0
    for conv_name in PLAIN:
        messages = CONVERSATIONS[conv_name]
        for agp in (False, True):
            try:
                expected = jinja_render(TEMPLATES[name], messages, agp, bos, eos)
            except jinja2.exceptions.TemplateError:
                expected = None
            rc, out, err = tool_run({"template": None, "name": family, "messages": messages,
                                     "add_generation_prompt": agp})
            if expected is None:
                assert rc == 1 and err.strip(), f"{conv_name}: jinja2 refuses it, we rendered {out!r}"
                continue
            if rc == 1 and "system" in err and any(m["role"] == "system" for m in messages):
                continue  # a family that places system text differently refuses it instead
            assert rc == 0, f"{conv_name}: {err}"
            assert out == expected, f"{conv_name}:\n ours  {out!r}\n jinja {expected!r}"
            matched += 1
    assert matched >= 16


# ---- errors ----

@pytest.mark.parametrize(
    "request_, needle",
    [
        ({"template": "", "messages": [M("user", "x")]}, "no chat template"),
        ({"template": "{% include 'x' %}", "messages": [M("user", "x")]},
         "line 1, column 4: unknown or unsupported statement 'include'"),
        ({"template": "a\n{{ messages[0].content.nope() }}", "messages": [M("user", "x")]},
         "line 2"),
        ({"template": TEMPLATES["gemma-7b"], "bos": "<bos>",
          "messages": [M("system", "s"), M("user", "x")]}, "System role not supported"),
        ({"template": "{{ messages }}", "messages": [M("user", "x")], "tools": {"not": "a list"}},
         "tools must be a JSON array"),
        ({"template": "{% for i in range(10**12) %}{% endfor %}", "messages": [M("user", "x")]},
         "RESOURCE_EXHAUSTED"),
        ({"template": None, "name": "nope", "messages": [M("user", "x")]}, "unknown chat template"),
        ({"template": None, "name": "chatml", "messages": []}, "no messages"),
        ({"template": None, "name": "chatml", "messages": [M("user", "x")], "tools": TOOLS},
         "cannot describe tools"),
        ({"template": None, "name": "chatml", "messages": [{"role": "user"}]}, "content"),
        ({"template": None, "name": "chatml", "messages": [M("user", "x")],
          "add_generation_prompt": "yes"}, "add_generation_prompt"),
    ],
)
def test_bad_requests_fail_with_a_message(request_, needle):
    rc, out, err = tool_run(request_)
    assert rc == 1 and out == ""
    assert needle in err, err


# ---- the interpreter's pieces, one construct at a time ----

SNIPPETS = [
    # literals and str() of values
    "{{ 1 }} {{ -2 }} {{ 1.0 }} {{ 2.50 }} {{ 1e20 }} {{ 1.5e-7 }} {{ 0.1 + 0.2 }} {{ 10 / 4 }}",
    "{{ true }} {{ false }} {{ none }} {{ [1, 'a', none, true, 2.0] }} {{ {'k': [1, {'n': none}]} }}",
    "{{ 'it\\'s' }} {{ \"q\\\"q\" }} {{ [\"it's\", 'say \"x\"', 'both \\' \"'] }} {{ 'a\\tb\\\\' }}",
    "{{ 'adjacent' 'strings' }} {{ (1, 2) }} {{ () }} {{ ('one',) }}",
    # arithmetic and operators
    "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % -3 }} {{ -7.5 % 2 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 3 * 'ab' }} {{ [0] * 3 }}",
    "{{ 1 + 2 * 3 - 4 / 2 }} {{ (1 + 2) * 3 }} {{ -3 ** 2 }} {{ 'a' ~ 1 ~ 2.5 ~ none ~ true }}",
    "{{ 1 < 2 < 3 }} {{ 1 < 3 < 2 }} {{ 1 == 1.0 }} {{ 'a' < 'b' }} {{ 'b' >= 'a' }} {{ [1, 2] == [1, 2] }}",
    "{{ 'ell' in 'hello' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 3 not in [1] }} {{ not 'x' in 'abc' }}",
    "{{ 0 or '' or 'x' }} {{ 1 and 'y' }} {{ '' and 'z' }}|{{ none or [] }} {{ not none }}",
    "{{ 'yes' if 1 else 'no' }} {{ 'yes' if 0 else 'no' }} [{{ 'only' if 0 }}]",
    # subscripts and slices
    "{{ messages[0]['role'] }} {{ messages[0].content }} {{ messages[-1].role }} [{{ messages[9] }}]",
    "{{ 'héllo wörld'[1:4] }} {{ 'abcdef'[::2] }} {{ 'abcdef'[::-1] }} {{ 'abc'[-2:] }} {{ 'abc'[5:] }}|",
    "{{ [1, 2, 3, 4][1:-1] }} {{ [1, 2, 3][::-1] }} {{ messages[1:] | length }} {{ 'abc'[1] }} {{ 'x'[-1] }}",
    # statements
    "{% for m in messages %}{{ loop.index }}/{{ loop.length }}:{{ m.role }}{% if not loop.last %}, {% endif %}{% endfor %}",
    "{% for m in messages if m.role != 'system' %}{{ loop.index0 }}{{ loop.first }}{{ loop.revindex0 }} {% else %}none{% endfor %}",
    "{% for x in [] %}x{% else %}empty{% endfor %} {% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}{{ v }}{% endfor %}",
    "{% for c in 'añb' %}[{{ c }}]{% endfor %} {% for k in {'x': 1, 'y': 2} %}{{ k }}{% endfor %}",
    "{% for i in range(5) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %}",
    "{% for x in [1, 2] %}{{ loop.previtem is defined }}{{ loop.nextitem | default('-') }}{% endfor %}",
    "{% set x = 1 %}{% for m in messages %}{% set x = x + 1 %}{{ x }}{% endfor %}{{ x }}",
    "{% set ns = namespace(n=0, s='') %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% set ns.s = ns.s + m.role[0] %}{% endfor %}{{ ns.n }}{{ ns.s }}",
    "{% set a, b = 'xy' %}{{ b }}{{ a }} {% set t = 1, 2 %}{{ t }}",
    "{% set block %}\n  inside {{ messages | length }}\n{% endset %}[{{ block }}] {% set up | upper %}low{% endset %}{{ up }}",
    "{% macro turn(role, text, end='<|end|>') %}<{{ role }}>{{ text | trim }}{{ end }}{% endmacro %}"
    "{% for m in messages %}{{ turn(m.role, m.content) }}{{ turn(text='k', role='r', end='') }}{% endfor %}",
    "{% if messages | length > 2 %}many{% elif messages %}some{% else %}none{% endif %}",
    # whitespace control
    "a\n  {% if true %}\n    b\n  {% endif %}\n  c  {{- ' d ' -}}  e\n{# comment #}\n  f",
    "{%- for m in messages -%}\n  {{ m.role }}\n{%- endfor -%}\n\n{%+ if true +%}  kept  {%+ endif +%}\n",
    "x  {#- trimmed comment -#}  y {% raw %}{{ raw }} {% if %}{% endraw %} z",
    "line1\r\nline2\rline3 {{ 'end' }}\n",
    # filters
    "{{ '  a b  ' | trim }}|{{ 'xxaxx' | trim('x') }}|{{ 'Ab' | upper }}{{ 'Ab' | lower }}|{{ 'hello WORLD-wide (x)' | title }}|{{ 'hELLO' | capitalize }}",
    "{{ messages | length }} {{ 'héllo' | length }} {{ {'a': 1} | count }} {{ undefined_x | length }}",
    "{{ messages | map(attribute='role') | join(', ') }} {{ [1, 2, 3] | join }} {{ messages | join('|', attribute='role') }}",
    "{{ messages | selectattr('role', 'equalto', 'user') | list | length }} {{ messages | rejectattr('role', 'in', ['user']) | map(attribute='role') | list }}",
    "{{ [0, 1, '', 'a', none] | select | list }} {{ [1, 2, 3, 4] | reject('even') | list }} {{ [3, 1, 2] | sort }} {{ ['b', 'A', 'c'] | sort(reverse=true) }}",
    "{{ undefined_x | default('dflt') }} {{ none | default('dflt') }} {{ '' | default('e', true) }} {{ 0 | d(5, boolean=true) }}",
    "{{ [3, 1] | first }} {{ [3, 1] | last }} {{ 'xyz' | first }} [{{ [] | first }}] {{ 42 | string }} {{ [1] | string }}",
    "{{ '12' | int + 1 }} {{ ' 7 ' | int }} {{ 'x' | int }} {{ 'x' | int(9) }} {{ 3.9 | int }} {{ '2.5' | int }} {{ '0x1f' | int(0, 16) }} {{ true | int }}",
    "{{ '2.5' | float }} {{ 'x' | float }} {{ 3 | float }} {{ -3 | abs }} {{ 2.567 | round(2) }} {{ 2.5 | round }} {{ 2.1 | round(0, 'ceil') }}",
    "{{ 'abc' | list }} {{ {'a': 1, 'b': 2} | items | list }} {{ {'b': 1, 'A': 2, 'a': 3} | dictsort }} {{ [1, 2, 1, 3] | unique | list }} {{ [1, 2] | reverse | list }} {{ 'ab' | reverse }}",
    "{{ 'a-b-a' | replace('a', 'x') }} {{ 'aaa' | replace('a', 'b', 2) }} {{ 'ab' | replace('', '.') }} {{ '<a & \"b\">' | e }} {{ '<x>' | safe }}",
    "{{ 'l1\\nl2\\n\\nl4' | indent }}|{{ 'l1\\nl2' | indent(2, true) }}|{{ 'a\\n\\nb' | indent(1, false, true) }}|{{ 'x\\ny' | indent('> ') }}",
    "{{ messages[0] | tojson }} {{ [1, 2.5, 'é', none, true, {}] | tojson }} {{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }}",
    "{{ {'a': [1, {'b': 'c'}], 'd': []} | tojson(indent=2) }}|{{ [1, 2] | tojson(separators=[',', ':']) }}|{{ '\\u0001\\t\"\\\\' | tojson }}",
    "{{ messages | map('upper') | list if false else messages | map(attribute='content') | map('trim') | list }}",
    # tests
    "{{ x is defined }} {{ x is undefined }} {{ none is none }} {{ 'a' is string }} {{ 1 is number }} {{ true is number }} {{ 1.5 is float }} {{ 1 is integer }} {{ true is boolean }}",
    "{{ {} is mapping }} {{ [] is mapping }} {{ 'a' is iterable }} {{ 1 is iterable }} {{ [] is sequence }} {{ 'a' is sequence }} {{ range is callable }}",
    "{{ 1 is true }} {{ true is true }} {{ false is false }} {{ 0 is false }} {{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 'ab' is lower }} {{ 'AB' is upper }}",
    "{{ 2 is equalto 2 }} {{ 2 is eq 3 }} {{ 2 is ne 3 }} {{ 2 is lt 3 }} {{ 2 is ge 3 }} {{ 'a' is in 'abc' }} {{ none is sameas none }} {{ 1 is not string }}",
    # methods
    "{{ ' x '.strip() }}|{{ 'xyx'.strip('x') }}|{{ '  a'.lstrip() }}|{{ 'b  '.rstrip() }}|{{ '\\n\\nq\\n'.lstrip('\\n') }}|{{ '\\u3000u\\u3000'.strip() }}",
    "{{ 'abc'.startswith('a') }} {{ 'abc'.startswith(('x', 'ab')) }} {{ 'abc'.endswith('bc') }} {{ 'abc'.endswith('x') }}",
    "{{ 'a b  c '.split() }} {{ 'a,b,,c'.split(',') }} {{ 'a b c'.split(' ', 1) }} {{ '  a  b  '.split(none, 1) }} {{ 'x</think>y'.split('</think>')[-1] }}",
    "{{ 'l1\\nl2\\r\\nl3'.splitlines() }} {{ 'hello world-x'.title() }} {{ 'abC'.upper() }}{{ 'ABc'.lower() }} {{ 'hEY'.capitalize() }}",
    "{{ 'a-b-a'.replace('a', 'x') }} {{ '{} and {}'.format(1, 'two') }} {{ '{1}{0}'.format('a', 'b') }} {{ '{n}!'.format(n=5) }} {{ '{{lit}}'.format() }}",
    "{{ 'hello'.find('l') }} {{ 'hello'.find('z') }} {{ 'hello'.count('l') }} {{ ', '.join(['a', 'b']) }} {{ [1, 2, 1].count(1) }} {{ [1, 2].index(2) }}",
    "{{ {'a': 1}.get('a') }} {{ {'a': 1}.get('b', 'd') }} {{ {'a': 1}.get('b') }} {{ {'a': 1, 'b': 2}.keys() | list }} {{ {'a': 1}.values() | list }} {{ {'a': 1}.items() | list }}",
    # globals
    "{{ range(3) | list }} {{ range(1, 4) | list }} {{ range(10, 0, -3) | list }} {{ range(0) | list }}",
    "{{ dict(a=1, b='x') }} {{ namespace(a=1).a }} {{ strftime_now('%Y-%m-%d %H:%M %b %d') }}",
    "{{ bos_token }}|{{ eos_token }}|{{ add_generation_prompt }}|{{ tools }}|{{ documents }}",
    "{{ 3 | round }} {{ '' is lower }} {{ 'A1' is upper }} {{ 'a1' is lower }} {{ (1, 2, 3)[:2] }} {{ 2.0 is even }} {{ 3.0 is odd }}",
    "{{ '%s-%d %s %% %r %i' % ('a', 3, none, 'q', 2.9) }} {{ 'x=%s' % 5 }} {{ '%s' % [1, 'a'] }} {{ '%f' % 1.5 }}",
    # errors jinja2 raises too
    "{{ '%s %s' % ('one',) }}",
    "{{ '%s' % () }}",
    "{{ [1] | indent }}",
    "{{ undefined_x | int }}",
    "{{ raise_exception('custom failure') }}",
    "{{ undefined_x.attr }}",
    "{{ undefined_x + 1 }}",
    "{{ 1 / 0 }}",
    "{{ 'a' + 1 }}",
    "{{ messages[0].role.nope() }}",
    "{{ none.attr }}|{{ messages[0].content.content is defined }}",
]


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_snippet_matches_jinja2(index):
    template = SNIPPETS[index]
    messages = CONVERSATIONS["multi_turn_system"]
    try:
        expected = jinja_render(template, messages, True, "<s>", "</s>")
    except Exception as e:  # noqa: BLE001: any jinja2 failure means we must fail too
        expected, why = None, e
    rc, out, err = tool_run({"template": template, "bos": "<s>", "eos": "</s>", "now": NOW,
                             "messages": messages, "add_generation_prompt": True})
    if expected is None:
        assert rc == 1 and err.strip(), f"jinja2 raised {why!r}; we rendered {out!r}"
    else:
        assert rc == 0, f"jinja2 renders {expected!r}; we failed: {err}"
        assert out == expected
