import assert from "node:assert/strict";
import { parseSet, UsageError } from "../../lib/cli/args.ts";

Deno.test("--set: several keys, bracketed and braced values with commas, quoted commas", () => {
  assert.deepEqual(parseSet("layers=[5],v_lr=0.5,v_num_grad_steps=20"), {
    layers: "[5]",
    v_lr: "0.5",
    v_num_grad_steps: "20",
  });
  assert.deepEqual(parseSet("context_template_length_params=[[5,10],[10,10]],v_lr=5e-1"), {
    context_template_length_params: "[[5,10],[10,10]]",
    v_lr: "5e-1",
  });
  assert.deepEqual(parseSet("layers=[3,4,5], m={a: 1, b: [2,3]} ,x=1"), {
    layers: "[3,4,5]",
    m: "{a: 1, b: [2,3]}",
    x: "1",
  });
  assert.deepEqual(parseSet(`rewrite_module_tmp="model.layers.{}.mlp, odd",k='a,b'`), {
    rewrite_module_tmp: `"model.layers.{}.mlp, odd"`,
    k: "'a,b'",
  });
  // an apostrophe inside a word is text, a trailing comma and the value's own "=" are fine
  assert.deepEqual(parseSet("subject=Rome's,x=[a, 'b,c']"), { subject: "Rome's", x: "[a, 'b,c']" });
  assert.deepEqual(parseSet("a=b=c,"), { a: "b=c" });
  assert.deepEqual(parseSet(""), {});
});

Deno.test("--set: an unbracketed comma, bad brackets, quotes, empty or repeated keys are clear usage errors", () => {
  const bad: [string, RegExp][] = [
    [
      "layers=5,6",
      /edit: --set: "6" after layers=… is not a key=value pair: .*brackets \(e\.g\. layers=\[5,6\]\)/,
    ],
    ["layers=[5,6", /edit: --set: unclosed bracket/],
    ["layers=5,6]", /edit: --set: unbalanced "\]"/],
    [`k="a,b`, /edit: --set: unclosed quote "/],
    ["5", /edit: --set expects key=value pairs, got "5"/],
    ["=5", /edit: --set expects key=value pairs/],
    ["layers=", /edit: --set: layers has no value/],
    ["v_lr=1,v_lr=2", /edit: --set: v_lr is given twice/],
  ];
  for (const [s, re] of bad) {
    assert.throws(() => parseSet(s, "edit"), (e: Error) => e instanceof UsageError && re.test(e.message), s);
  }
});
