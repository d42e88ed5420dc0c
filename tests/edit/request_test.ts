import assert from "node:assert/strict";
import {
  CONTEXT_TEMPLATE_SEEDS,
  contextTemplateCount,
  contextTemplateSpec,
  type EditRequest,
  loadRequests,
  normalizeRequest,
  parseRequests,
  promptText,
  RequestError,
  targetText,
} from "../../lib/edit/request.ts";
import { loadHparams } from "../../lib/edit/hparams.ts";
import { sharedPath } from "../_util.ts";

const CONFIGS = new URL("../../configs/", import.meta.url);

/** Asserts a RequestError with exactly this message (or matching it) and this field. */
function assertRequestError(fn: () => unknown, message: string | RegExp, field?: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof RequestError, `expected RequestError, got ${caught}`);
  if (typeof message === "string") assert.equal(caught.message, message);
  else assert.match(caught.message, message);
  if (field !== undefined) assert.equal(caught.field, field);
}

const LEBRON: EditRequest = {
  prompt: "{} plays the sport of",
  subject: "LeBron James",
  targetNew: "football",
  groundTruth: "basketball",
  caseId: 7,
};

Deno.test("request: EasyEdit flat style, subject written in the prompt", () => {
  const r = normalizeRequest({
    case_id: 7,
    prompt: "LeBron James plays the sport of",
    subject: "LeBron James",
    target_new: "football",
    ground_truth: "basketball",
    rephrase_prompt: "ignored",
    locality_prompt: "ignored",
    locality_ground_truth: "ignored",
  }, "r");
  assert.deepEqual(r, LEBRON);
  assert.equal(promptText(r), "LeBron James plays the sport of");
});

Deno.test("request: flat style with {} already in the prompt, and the kmeng01 {str} target form", () => {
  const r = normalizeRequest(
    { prompt: "{} plays the sport of", subject: "LeBron James", target_new: { str: "football" } },
    "r",
  );
  assert.deepEqual(r, { prompt: "{} plays the sport of", subject: "LeBron James", targetNew: "football" });
  // The oracle's request form: flat with target_true.
  const o = normalizeRequest(
    { prompt: "{} is located in", subject: "Angola", target_new: "Antarctica", target_true: "Africa" },
    "r",
  );
  assert.deepEqual(o, {
    prompt: "{} is located in",
    subject: "Angola",
    targetNew: "Antarctica",
    groundTruth: "Africa",
  });
});

Deno.test("request: only the FIRST occurrence of the subject becomes {}", () => {
  const r = normalizeRequest({
    prompt: "Paris, like Paris itself, is in",
    subject: "Paris",
    target_new: "Italy",
  }, "r");
  assert.equal(r.prompt, "{}, like Paris itself, is in");
  assert.equal(promptText(r), "Paris, like Paris itself, is in");
  // Subjects with regex / format metacharacters are matched literally.
  const s = normalizeRequest({
    prompt: "The C++ (language) was made by",
    subject: "C++ (language)",
    target_new: "x",
  }, "r");
  assert.equal(s.prompt, "The {} was made by");
});

Deno.test("request: ROME CounterFact style", () => {
  const r = normalizeRequest({
    case_id: 20952,
    pararel_idx: 1,
    requested_rewrite: {
      prompt: "{} is located in",
      relation_id: "P30",
      target_new: { str: "Antarctica", id: "Q51" },
      target_true: { str: "Africa", id: "Q15" },
      subject: "Angola",
    },
    paraphrase_prompts: ["…"],
    neighborhood_prompts: ["…"],
  }, "r");
  assert.deepEqual(r, {
    prompt: "{} is located in",
    subject: "Angola",
    targetNew: "Antarctica",
    groundTruth: "Africa",
    caseId: 20952,
  });
});

Deno.test("request: keg camelCase style", () => {
  assert.deepEqual(normalizeRequest({ ...LEBRON }, "r"), LEBRON);
  const r = normalizeRequest({
    prompt: "LeBron James plays",
    subject: "LeBron James",
    targetNew: "golf",
    caseId: "a1",
  }, "r");
  assert.deepEqual(r, { prompt: "{} plays", subject: "LeBron James", targetNew: "golf", caseId: "a1" });
});

Deno.test("request: every error names where and the field", () => {
  const ok = { prompt: "{} plays the sport of", subject: "LeBron James", target_new: "football" };
  assertRequestError(
    () => normalizeRequest({ ...ok, prompt: "Kobe plays the sport of" }, "req.json[2]"),
    'req.json[2]: prompt: the subject "LeBron James" does not occur in "Kobe plays the sport of" (and there is no "{}")',
    "prompt",
  );
  assertRequestError(() => normalizeRequest({ ...ok, subject: "" }, "w"), "w: subject: is empty", "subject");
  assertRequestError(
    () => normalizeRequest({ ...ok, subject: "  " }, "w"),
    "w: subject: is empty",
    "subject",
  );
  assertRequestError(
    () => normalizeRequest({ ...ok, target_new: "" }, "w"),
    "w: target_new: is empty",
    "target_new",
  );
  assertRequestError(
    () => normalizeRequest({ ...ok, target_new: { str: " " } }, "w"),
    "w: target_new.str: is empty",
  );
  assertRequestError(() => normalizeRequest({ ...ok, ground_truth: "" }, "w"), "w: ground_truth: is empty");
  assertRequestError(
    () => normalizeRequest({ ...ok, prompt: "{} and {} play" }, "w"),
    'w: prompt: has 2 "{}" placeholders, expected one: "{} and {} play"',
    "prompt",
  );
  assertRequestError(
    () => normalizeRequest({ ...ok, prompt: 42 }, "w"),
    "w: prompt: expected a string, got 42",
  );
  assertRequestError(
    () => normalizeRequest({ ...ok, subject: ["a"] }, "w"),
    "w: subject: expected a string, got a list",
  );
  assertRequestError(
    () => normalizeRequest({ ...ok, target_new: null }, "w"),
    "w: target_new: expected a string, got null",
  );
  assertRequestError(
    () => normalizeRequest({ ...ok, target_new: { id: "Q1" } }, "w"),
    "w: target_new: expected a string or {str: …}, got an object",
  );
  assertRequestError(
    () => normalizeRequest({ ...ok, ground_truth: 3 }, "w"),
    "w: ground_truth: expected a string, got 3",
  );
  assertRequestError(
    () => normalizeRequest({ subject: "x", target_new: "y" }, "w"),
    "w: prompt: missing",
    "prompt",
  );
  assertRequestError(
    () => normalizeRequest({ prompt: "{} is", subject: "x" }, "w"),
    "w: target_new: missing",
  );
  assertRequestError(
    () => normalizeRequest({ ...ok, targetNew: "golf" }, "w"),
    "w: target_new: given twice (as target_new and targetNew)",
  );
  assertRequestError(
    () => normalizeRequest({ ...ok, case_id: { n: 1 } }, "w"),
    "w: case_id: expected a number or a string, got an object",
  );
  assertRequestError(
    () => normalizeRequest("LeBron", "w"),
    'w: expected an edit request object, got "LeBron"',
  );
  assertRequestError(() => normalizeRequest([ok], "w"), "w: expected an edit request object, got a list");
  assertRequestError(
    () => normalizeRequest({ requested_rewrite: [ok] }, "w"),
    "w: requested_rewrite: expected an object, got a list",
  );
  assertRequestError(
    () =>
      normalizeRequest({
        case_id: 1,
        requested_rewrite: { prompt: "{} is", subject: "x", target_new: { str: "" } },
      }, "w"),
    "w: requested_rewrite.target_new.str: is empty",
  );
  assertRequestError(
    () => normalizeRequest({ requested_rewrite: { prompt: "{} is", target_new: { str: "y" } } }, "w"),
    "w: requested_rewrite.subject: missing",
  );
});

Deno.test("request: targetText adds EasyEdit's leading space once", () => {
  assert.equal(targetText("football"), " football");
  assert.equal(targetText(" football"), " football");
  assert.equal(targetText("New York"), " New York");
});

Deno.test("request: loadRequests reads JSON arrays, JSON Lines and single objects; errors name file and record", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const flat = {
      prompt: "LeBron James plays the sport of",
      subject: "LeBron James",
      target_new: "football",
    };
    const cf = {
      case_id: 1,
      requested_rewrite: {
        prompt: "{} is in",
        subject: "Angola",
        target_new: { str: "Asia" },
        target_true: { str: "Africa" },
      },
    };
    const arr = `${dir}/a.json`;
    await Deno.writeTextFile(arr, JSON.stringify([flat, cf], null, 2));
    const a = await loadRequests(arr);
    assert.equal(a.length, 2);
    assert.equal(a[0].prompt, "{} plays the sport of");
    assert.equal(a[1].groundTruth, "Africa");

    const jsonl = `${dir}/b.jsonl`;
    await Deno.writeTextFile(jsonl, `${JSON.stringify(cf)}\n\n${JSON.stringify(flat)}\n`);
    assert.deepEqual(await loadRequests(jsonl), [a[1], a[0]]);

    const one = `${dir}/c.json`;
    await Deno.writeTextFile(one, JSON.stringify(flat, null, 2));
    assert.deepEqual(await loadRequests(one), [a[0]]);

    await Deno.writeTextFile(arr, JSON.stringify([flat, { ...flat, subject: "Kobe" }]));
    await assert.rejects(() => loadRequests(arr), {
      message: new RegExp(`^${arr}\\[1\\]: prompt: the subject "Kobe" does not occur`),
    });
    await Deno.writeTextFile(
      jsonl,
      `${JSON.stringify(flat)}\n{"prompt": 3, "subject": "x", "target_new": "y"}\n`,
    );
    await assert.rejects(() => loadRequests(jsonl), {
      message: `${jsonl}:2: prompt: expected a string, got 3`,
    });
    await Deno.writeTextFile(jsonl, `${JSON.stringify(flat)}\n{"prompt": \n`);
    await assert.rejects(
      () => loadRequests(jsonl),
      (e: unknown) => e instanceof RequestError && e.where === `${jsonl}:2`,
    );
    await Deno.writeTextFile(arr, "[1, ");
    await assert.rejects(() => loadRequests(arr), new RegExp(`^RequestError: ${arr}: invalid JSON`));
    await Deno.writeTextFile(arr, " \n");
    await assert.rejects(() => loadRequests(arr), { message: `${arr}: no requests (empty file)` });
    await Deno.writeTextFile(arr, "[]");
    await assert.rejects(() => loadRequests(arr), { message: `${arr}: no requests (empty array)` });
    await assert.rejects(() => loadRequests(`${dir}/missing.json`), /missing\.json: cannot read/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("request: parseRequests labels records with the given source", () => {
  const body = '{"prompt": "{} is", "subject": "x", "targetNew": "y"}\n{"prompt": "{} is", "subject": "x"}\n';
  assertRequestError(() => parseRequests(body, "--requests -"), "--requests -:2: target_new: missing");
  assert.deepEqual(parseRequests(body.split("\n")[0], "s"), [{
    prompt: "{} is",
    subject: "x",
    targetNew: "y",
  }]);
});

Deno.test("request: the shared CounterFact files normalize in both formats and agree", async () => {
  const easy = sharedPath("data/datasets/counterfact-easyedit/counterfact-edit.json");
  const rome = sharedPath("data/datasets/counterfact-rome/counterfact.json");
  if (!easy || !rome) return;
  const flat = await loadRequests(easy);
  assert.equal(flat.length, 7500);
  for (const r of flat) {
    assert.equal(r.prompt.split("{}").length, 2);
    assert.ok(r.groundTruth);
  }
  const cf = await loadRequests(rome);
  assert.equal(cf.length, 375);
  // The same case_ids in both formats describe the same edit: the flat prompt, with {} put back, is the
  // CounterFact prompt.
  const byId = new Map(flat.map((r) => [r.caseId, r]));
  let matched = 0;
  for (const r of cf) {
    const f = byId.get(r.caseId);
    if (!f) continue;
    matched++;
    assert.equal(promptText(f), promptText(r), `case ${r.caseId}`);
    assert.equal(f.targetNew, r.targetNew);
    assert.equal(f.groundTruth, r.groundTruth);
  }
  // The ROME file's own prompts are templates; the first record is the oracle's first edit.
  assert.deepEqual(cf[0], {
    prompt: "{} is located in",
    subject: "Angola",
    targetNew: "Antarctica",
    groundTruth: "Africa",
    caseId: 20952,
  });
  assert.equal(matched, 176); // case_ids present in both files
});

Deno.test("request: the oracle's requests normalize to its prompts", async () => {
  const p = sharedPath("models/tiny-gpt2-counterfact/rome_reference/oracle.json");
  if (!p) return;
  const oracle = JSON.parse(await Deno.readTextFile(p));
  for (const e of oracle.edits) {
    const r = normalizeRequest(e.request, `oracle case ${e.case_id}`);
    assert.equal(r.prompt, e.request.prompt);
    assert.equal(r.groundTruth, e.request.target_true);
  }
});

Deno.test("request: context template plan, [[5,10],[10,10]] gives 21 templates", async () => {
  const spec = contextTemplateSpec({ contextTemplateLengthParams: [[5, 10], [10, 10]] });
  assert.deepEqual(spec, [[5, 10], [10, 10]]);
  assert.equal(contextTemplateCount(spec), 21);
  assert.equal(contextTemplateCount([]), 1);
  assert.equal(contextTemplateCount([[5, 7]]), 6); // ⌊7/5⌋ = 1 per seed word
  assert.equal(CONTEXT_TEMPLATE_SEEDS.length, 5);
  const hp = await loadHparams(new URL("R-ROME/tiny-gpt2-counterfact.yaml", CONFIGS).pathname);
  assert.equal(contextTemplateCount(contextTemplateSpec(hp)), 21);
  // The oracle's templates: "{}" first, then 20 sampled ones, each starting with a seed word's text and
  // ending in ". {}".
  const p = sharedPath("models/tiny-gpt2-counterfact/rome_reference/oracle.json");
  if (!p) return;
  const templates: string[] = JSON.parse(await Deno.readTextFile(p)).context_templates;
  assert.equal(templates.length, contextTemplateCount(contextTemplateSpec(hp)));
  assert.equal(templates[0], "{}");
  for (const t of templates.slice(1)) assert.ok(t.endsWith(". {}"), t);
});
