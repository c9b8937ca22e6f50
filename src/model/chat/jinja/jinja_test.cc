#include "model/chat/jinja/template.h"

#include <gtest/gtest.h>

#include "model/chat/jinja/json.h"
#include "model/chat/jinja/lexer.h"
#include "model/chat/jinja/strings.h"

namespace llmasos::chat::jinja {
namespace {

Dict Vars(const std::string& json) {
  auto parsed = FromJson(nlohmann::ordered_json::parse(json), /*is_content=*/false, 0);
  EXPECT_TRUE(parsed.ok());
  return parsed->dict();
}

// Renders `source` with variables from a JSON object; the error message on failure.
std::string R(std::string_view source, const std::string& vars = "{}") {
  StatusOr<Template> t = Template::Parse(source);
  if (!t.ok()) return "PARSE ERROR: " + t.status().message();
  StatusOr<Text> out = t->Render(Vars(vars));
  if (!out.ok()) return "ERROR: " + out.status().message();
  return out->str();
}

TEST(JinjaLexerTest, NamesLineAndColumnOfAnUnterminatedTag) {
  StatusOr<std::vector<Token>> t = Tokenize("ab\n  {{ x ");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("line 2, column 3"), std::string::npos) << t.status().message();
}

TEST(JinjaLexerTest, KeepsDictBracesInsideAnOutputTag) {
  EXPECT_EQ(R("{{ {'a': {'b': 1}}['a']['b'] }}"), "1");
}

TEST(JinjaTest, RendersLiteralsAsPythonPrintsThem) {
  EXPECT_EQ(R("{{ 1 }} {{ 1.0 }} {{ 1.5e-5 }} {{ 1e16 }} {{ true }} {{ none }} {{ 'a' }}"),
            "1 1.0 1.5e-05 1e+16 True None a");
  EXPECT_EQ(R("{{ [1, 'a', none, {'k': false}] }}"), "[1, 'a', None, {'k': False}]");
  EXPECT_EQ(R("{{ 0.1 + 0.2 }}"), "0.30000000000000004");
}

TEST(JinjaTest, FollowsPythonArithmetic) {
  EXPECT_EQ(R("{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 1 / 2 }} {{ 2 ** 10 }} {{ 'ab' * 2 }}"),
            "3 -4 2 0.5 1024 abab");
  EXPECT_EQ(R("{{ 'a' ~ 1 ~ none ~ x }}"), "a1None");
  EXPECT_EQ(R("{{ [1] + [2] }}"), "[1, 2]");
  EXPECT_NE(R("{{ 1 // 0 }}").find("division by zero"), std::string::npos);
  EXPECT_NE(R("{{ 9223372036854775807 + 1 }}").find("integer overflow"), std::string::npos);
}

TEST(JinjaTest, AppliesFiltersBeforeArithmetic) {
  EXPECT_EQ(R("{{ 'a' + x | trim + 'b' }}", R"({"x": "  y  "})"), "ayb");
  EXPECT_EQ(R("{{ x | length != 0 }}", R"({"x": [1]})"), "True");
  EXPECT_EQ(R("{{ not x is defined }}"), "True");
}

TEST(JinjaTest, ComparesAndChainsLikePython) {
  EXPECT_EQ(R("{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 1 == 1.0 }} {{ 'a' in 'cat' }} {{ 2 not in [1] }}"),
            "True False True True True");
  EXPECT_EQ(R("{{ 'k' in {'k': 1} }}"), "True");
}

TEST(JinjaTest, ReturnsOperandsFromAndOr) {
  EXPECT_EQ(R("{{ 0 or 'x' }} {{ 'a' and 'b' }} {{ '' and 'b' }}|"), "x b |");
  EXPECT_EQ(R("{{ 'y' if 0 else 'n' }}{{ 'z' if 0 }}|"), "n|");
}

TEST(JinjaTest, SlicesByCodePoint) {
  EXPECT_EQ(R("{{ 'héllo'[1:3] }} {{ 'abc'[::-1] }} {{ [1,2,3][-1] }} {{ [1,2,3][1:] }}"),
            "él cba 3 [2, 3]");
  EXPECT_EQ(R("{{ x[5] }}|", R"({"x": [1]})"), "|");
  // The largest index is out of range like any other (its slice end would overflow).
  EXPECT_EQ(R("{{ 'abc'[9223372036854775807] }}{{ [1][9223372036854775807] }}|"), "|");
}

TEST(JinjaTest, LoopVariablesAndElse) {
  EXPECT_EQ(R("{% for x in 'abc' %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}"
              "{{ loop.last }}{{ loop.length }}{{ loop.revindex }};{% endfor %}"),
            "10TrueFalse33;21FalseFalse32;32FalseTrue31;");
  EXPECT_EQ(R("{% for x in [] %}x{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(R("{% for x in [1,2,3,4] if x % 2 == 0 %}{{ x }}/{{ loop.length }} {% endfor %}"),
            "2/2 4/2 ");
  EXPECT_EQ(R("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }},{% endfor %}"), "a=1,b=2,");
  EXPECT_EQ(R("{% for x in [1,2,3,4] %}{% if x == 2 %}{% continue %}{% endif %}"
              "{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}"),
            "13");
}

TEST(JinjaTest, ScopesSetToTheLoopIterationAndNamespacesCarryState) {
  EXPECT_EQ(R("{% set y = 5 %}{% for x in [1, 2] %}{% if loop.first %}{% set y = 1 %}{% endif %}"
              "[{{ y }}]{% endfor %}{{ y }}"),
            "[1][5]5");
  EXPECT_EQ(R("{% set ns = namespace(n=0) %}{% for x in [1, 2, 3] %}{% set ns.n = ns.n + x %}"
              "{% endfor %}{{ ns.n }}"),
            "6");
  EXPECT_EQ(R("{% if true %}{% set z = 3 %}{% endif %}{{ z }}"), "3");
  EXPECT_EQ(R("{% set a, b = 1, 2 %}{{ b }}{{ a }}"), "21");
  EXPECT_EQ(R("{% set x %}  in  {{ 1 }}{% endset %}[{{ x }}]"), "[  in  1]");
  EXPECT_EQ(R("{% set x | trim | upper %}  in  {% endset %}[{{ x }}]"), "[IN]");
}

TEST(JinjaTest, MacrosTakeArgumentsDefaultsAndKeywords) {
  EXPECT_EQ(R("{% macro m(a, b='d') %}<{{ a }}{{ b }}{{ top }}>{% endmacro %}{% set top = 'T' %}"
              "{{ m(1) }}{{ m(1, 2) }}{{ m(b=3, a=4) }}"),
            "<1dT><12T><43T>");
  EXPECT_NE(R("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}").find("deeper"), std::string::npos);
}

TEST(JinjaTest, AppliesWhitespaceControlAsHuggingFaceConfiguresIt) {
  // trim_blocks drops the newline after a block tag; lstrip_blocks the indentation before it.
  EXPECT_EQ(R("  {% if true %}\n  x\n  {% endif %}\n  {{ 1 }}\n"), "  x\n  1");
  EXPECT_EQ(R("a  {%- if true -%}  b  {%- endif %}  c"), "ab  c");
  EXPECT_EQ(R("a {{- ' b ' -}} c"), "a b c");
  EXPECT_EQ(R("a\n  {#- comment #}\nb"), "ab");
  EXPECT_EQ(R("x\r\ny{% raw %}{{ not parsed }}{% endraw %}"), "x\ny{{ not parsed }}");
  EXPECT_EQ(R("  {%+ if true %}x{% endif +%}\ny"), "  x\ny");
}

TEST(JinjaTest, UndefinedValuesPrintEmptyButCannotBeDereferenced) {
  EXPECT_EQ(R("[{{ x }}{{ x | length }}{{ x is defined }}{{ d.k }}]", R"({"d": {}})"), "[0False]");
  EXPECT_NE(R("{{ x.y }}").find("undefined"), std::string::npos);
  EXPECT_NE(R("{{ x + 'a' }}").find("unsupported operand"), std::string::npos);
  EXPECT_EQ(R("{{ n.attr }}|", R"({"n": null})"), "|");
}

TEST(JinjaTest, Filters) {
  EXPECT_EQ(R("{{ ' a ' | trim }}|{{ 'ab' | upper }}|{{ 'AB' | lower }}|{{ 'hello world' | title }}"
              "|{{ 'hELLO' | capitalize }}"),
            "a|AB|ab|Hello World|Hello");
  EXPECT_EQ(R("{{ [1, 2] | join(', ') }}|{{ x | default('d') }}|{{ '' | default('d', true) }}"
              "|{{ [3, 1] | first }}{{ 'ab' | last }}|{{ 5 | string }}|{{ '12' | int + 1 }}"
              "|{{ 'x' | int }}|{{ 3.7 | int }}"),
            "1, 2|d|d|3b|5|13|0|3");
  EXPECT_EQ(R("{{ 'a-b-c' | replace('-', '+') }}|{{ {'a': 1} | items | list }}|{{ 'ab' | list }}"),
            "a+b+c|[('a', 1)]|['a', 'b']");
  EXPECT_EQ(R("{{ m | map(attribute='r') | list }}{{ m | selectattr('r', 'equalto', 'u') | list }}"
              "{{ m | rejectattr('r', 'equalto', 'u') | map(attribute='r') | join }}",
              R"({"m": [{"r": "u"}, {"r": "a"}]})"),
            "['u', 'a'][{'r': 'u'}]a");
  EXPECT_EQ(R("{{ 'a\nb' | indent(2) }}|{{ 'a\nb' | indent(2, true) }}"), "a\n  b|  a\n  b");
  EXPECT_NE(R("{{ 1 | nosuchfilter }}").find("unknown filter 'nosuchfilter'"), std::string::npos);
}

TEST(JinjaTest, ToJsonMatchesTransformersJsonDumps) {
  EXPECT_EQ(R("{{ x | tojson }}", R"({"x": {"b": 1, "a": [1.5, "é\n\"", null, true]}})"),
            R"({"b": 1, "a": [1.5, "é\n\"", null, true]})");
  EXPECT_EQ(R("{{ x | tojson(indent=2) }}", R"({"x": {"a": [1], "e": {}}})"),
            "{\n  \"a\": [\n    1\n  ],\n  \"e\": {}\n}");
  EXPECT_EQ(R("{{ '<b>' | tojson }}"), "\"<b>\"");
}

TEST(JinjaTest, Tests) {
  EXPECT_EQ(R("{{ 'x' is string }}{{ 1 is number }}{{ {} is mapping }}{{ 'a' is iterable }}"
              "{{ none is none }}{{ 1 is true }}{{ true is true }}{{ 3 is odd }}{{ x is undefined }}"
              "{{ 2 is equalto 2 }}{{ [] is sequence }}{{ 1 is not string }}"),
            "TrueTrueTrueTrueTrueFalseTrueTrueTrueTrueTrueTrue");
}

TEST(JinjaTest, StringAndDictMethods) {
  EXPECT_EQ(R("{{ ' x '.strip() }}|{{ 'xxaxx'.lstrip('x') }}|{{ 'ab'.startswith('a') }}"
              "{{ 'ab'.endswith(('x', 'b')) }}|{{ 'a b  c'.split() }}|{{ 'a,b'.split(',') }}"
              "|{{ 'hi there'.title() }}|{{ '{}-{}'.format(1, 'x') }}|{{ 'aXa'.replace('a', 'b') }}"),
            "x|axx|TrueTrue|['a', 'b', 'c']|['a', 'b']|Hi There|1-x|bXb");
  EXPECT_EQ(R("{{ d.get('a') }}{{ d.get('z', 'def') }}{{ d.get('z') }}{{ d.keys() | list }}"
              "{{ d.values() | list }}",
              R"({"d": {"a": 1}})"),
            "1defNone['a'][1]");
}

TEST(JinjaTest, GlobalsRaiseRangeAndDate) {
  EXPECT_NE(R("{{ raise_exception('roles must alternate') }}").find("roles must alternate"),
            std::string::npos);
  EXPECT_EQ(R("{{ range(3) | list }}{{ range(1, 7, 2) | list }}"), "[0, 1, 2][1, 3, 5]");
  StatusOr<Template> t = Template::Parse("{{ strftime_now('%Y-%m-%d') }}");
  ASSERT_TRUE(t.ok());
  RenderOptions opts;
  opts.now = 86400 * 365;  // 1971-01-01 (or 1970-12-31 west of UTC)
  StatusOr<Text> out = t->Render(Dict(), opts);
  ASSERT_TRUE(out.ok());
  EXPECT_TRUE(out->str() == "1971-01-01" || out->str() == "1970-12-31") << out->str();
}

TEST(JinjaTest, ReportsSyntaxErrorsWithPosition) {
  EXPECT_NE(R("{% if x %}no end").find("endif"), std::string::npos);
  EXPECT_NE(R("line1\n{{ 1 + }}").find("line 2"), std::string::npos);
  EXPECT_NE(R("{% frobnicate %}").find("unknown or unsupported statement 'frobnicate'"),
            std::string::npos);
}

TEST(JinjaTest, BoundsHostileTemplates) {
  RenderOptions small;
  small.limits.max_steps = 100000;
  small.limits.max_output_bytes = 1 << 16;
  small.limits.max_string_bytes = 1 << 20;
  auto run = [&](std::string_view src) {
    StatusOr<Template> t = Template::Parse(src);
    if (!t.ok()) return t.status();
    StatusOr<Text> out = t->Render(Dict(), small);
    return out.ok() ? OkStatus() : out.status();
  };
  EXPECT_EQ(run("{% for i in range(1000) %}{% for j in range(1000) %}x{% endfor %}{% endfor %}").code(),
            StatusCode::kResourceExhausted);
  EXPECT_EQ(run("{{ 'x' * 100000000000 }}").code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(run("{% for i in range(100000000000) %}{% endfor %}").code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(run("{% for i in range(100) %}{{ 'y' * 1000 }}{% endfor %}").code(),
            StatusCode::kResourceExhausted);
  // Deep nesting is refused by the parser instead of exhausting the stack.
  EXPECT_EQ(run("{{ " + std::string(100000, '(')).code(), StatusCode::kInvalidArgument);
  std::string chain = "{{ 1";
  for (int i = 0; i < 100000; ++i) chain += " + 1";
  EXPECT_EQ(run(chain + " }}").code(), StatusCode::kInvalidArgument);
  std::string ifs;
  for (int i = 0; i < 10000; ++i) ifs += "{% if 1 %}";
  EXPECT_EQ(run(ifs).code(), StatusCode::kInvalidArgument);
}

TEST(JinjaTest, RefusesDeepValuesAndNamespaceCycles) {
  // Each would otherwise recurse once per level when printed or freed.
  EXPECT_NE(R("{% set h = namespace(v=[]) %}{% for i in range(100000) %}{% set h.v = [h.v] %}"
              "{% endfor %}{{ h.v }}").find("nested deeper than"),
            std::string::npos);
  EXPECT_NE(R("{% set h = namespace(v=none) %}{% for i in range(100000) %}"
              "{% set h.v = namespace(next=h.v) %}{% endfor %}")
                .find("cannot hold another namespace"),
            std::string::npos);
  EXPECT_NE(R("{% set a = namespace() %}{% set a.self = [{'k': a}] %}").find("cannot hold another namespace"),
            std::string::npos);
  EXPECT_NE(R("{% set a = namespace() %}{% set a.self = {a: 1} %}").find("cannot hold another namespace"),
            std::string::npos);
  EXPECT_NE(R("{% set a = namespace(x=1) %}{{ a | tojson }}").find("not JSON"), std::string::npos);
  // Real templates keep lists and scalars in namespaces.
  EXPECT_EQ(R("{% set ns = namespace(ids=[]) %}{% for i in range(3) %}{% set ns.ids = ns.ids + [i] %}"
              "{% endfor %}{{ ns.ids }}"),
            "[0, 1, 2]");
}

TEST(JinjaTextTest, KeepsContentMarksThroughStringOperations) {
  const Dict vars = [] {
    Dict d;
    d.Set(Value::String("c"), Value::String("  <|im_start|>hi  ", /*is_content=*/true));
    return d;
  }();
  StatusOr<Template> t = Template::Parse("<|im_start|>user\n{{ c | trim }}{{ '|' + c.strip() + '|' }}<|im_end|>");
  ASSERT_TRUE(t.ok());
  StatusOr<Text> out = t->Render(vars);
  ASSERT_TRUE(out.ok());
  std::vector<std::pair<std::string, bool>> runs;
  out->ForEachRun([&](std::string_view s, bool c) { runs.emplace_back(std::string(s), c); });
  const std::vector<std::pair<std::string, bool>> want = {
      {"<|im_start|>user\n", false}, {"<|im_start|>hi", true}, {"|", false},
      {"<|im_start|>hi", true},      {"|<|im_end|>", false}};
  EXPECT_EQ(runs, want);
}

TEST(JinjaTextTest, SplitAndReplaceKeepMarks) {
  Text t("ab", true);
  t.Append("--", false);
  t.Append("cd", true);
  std::vector<Text> parts = Split(t, std::string("-"), -1);
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_TRUE(parts[0].AnyContent());
  EXPECT_FALSE(parts[1].AnyContent());
  Text r = Replace(t, "--", Text("X"), -1);
  EXPECT_EQ(r.str(), "abXcd");
  EXPECT_EQ(r.content_ranges().size(), 2u);
}

}  // namespace
}  // namespace llmasos::chat::jinja
