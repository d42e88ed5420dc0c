/**
 * Tokenizers for HF model directories, giving the same ids as HuggingFace:
 *
 * - `tokenizer.json` (any HF "fast" tokenizer) through `npm:@huggingface/tokenizers`;
 * - GPT-2 style `vocab.json` + `merges.txt` (or OpenAI's `encoder.json` + `vocab.bpe`) through keg's own
 *   byte-level BPE, {@linkcode ByteLevelBpe}, which reproduces GPT-2's pre-tokenizer regex and merge order
 *   (so `" Paris"` is one token and a leading space belongs to the following word).
 *
 * Special tokens follow `tokenizer_config.json` / `special_tokens_map.json`. BOS handling follows HF:
 * a tokenizer adds BOS when `tokenizer_config.json` says `add_bos_token: true`, or (without that key) when
 * tokenizer.json's post-processor prepends it (Llama); GPT-2 adds nothing. `encode` adds no other special
 * tokens (no EOS), which is what causal-LM prompts need.
 * @module
 */
// Inline npm specifier on purpose: a remote `import … from "<url>/mod.ts"` has no import map.
import {
  ByteLevelPreTokenizer,
  type PreTokenizer,
  SequencePreTokenizer,
  Tokenizer as HfTokenizer,
} from "npm:@huggingface/tokenizers@0.2.0";

/** A tokenizer that cannot be loaded or a request it cannot serve. */
export class TokenizerError extends Error {
  /** An error with a complete message (it names the directory or file). */
  constructor(message: string) {
    super(message);
    this.name = "TokenizerError";
  }
}

/** Options for {@linkcode Tokenizer.encode}. */
export interface EncodeOptions {
  /** Prepend the BOS token (default: {@linkcode Tokenizer.addsBos}). */
  addBos?: boolean;
}

/** Options for {@linkcode Tokenizer.decode}. */
export interface DecodeOptions {
  /** Drop special tokens such as `<|endoftext|>` from the text (default false). */
  skipSpecialTokens?: boolean;
}

/** Text ↔ token ids for one model. */
export interface Tokenizer {
  /** Which files it was built from. */
  readonly source: "tokenizer.json" | "vocab.json+merges.txt" | "synthetic";
  /** The BOS token id, or null. */
  readonly bosId: number | null;
  /** The EOS token id, or null. */
  readonly eosId: number | null;
  /** The padding token id, or null (GPT-2 has none). */
  readonly padId: number | null;
  /** Number of distinct ids, including added tokens (HF `len(tokenizer)`). */
  readonly vocabSize: number;
  /** Whether {@linkcode Tokenizer.encode} prepends BOS by default, as HF does for this tokenizer. */
  readonly addsBos: boolean;
  /** Token ids of `text`. Special-token strings in the text (e.g. `<|endoftext|>`) become their ids. */
  encode(text: string, opts?: EncodeOptions): number[];
  /** The text of `ids` (cleanup of tokenization spaces as `tokenizer_config.json` asks, like HF). */
  decode(ids: readonly number[], opts?: DecodeOptions): string;
  /** The id of a vocabulary token string (e.g. "ĠParis"), or undefined. */
  tokenToId(token: string): number | undefined;
  /** The vocabulary token string of an id, or undefined. */
  idToToken(id: number): string | undefined;
}

/** Options for {@linkcode loadTokenizer}. */
export interface LoadTokenizerOptions {
  /**
   * Which files to use: "tokenizer.json", or "bpe" for vocab.json + merges.txt. Default: tokenizer.json
   * when present, else the BPE files.
   */
  source?: "tokenizer.json" | "bpe";
}

type Json = Record<string, unknown>;

function join(dir: string, name: string): string {
  return dir.endsWith("/") ? dir + name : `${dir}/${name}`;
}

async function exists(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

async function readJson(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new TokenizerError(`${path}: cannot read: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new TokenizerError(`${path}: not valid JSON: ${(e as Error).message}`);
  }
}

async function readJsonIfExists(path: string): Promise<Json | null> {
  if (!(await exists(path))) return null;
  const v = await readJson(path);
  if (v === null || typeof v !== "object" || Array.isArray(v)) {
    throw new TokenizerError(`${path}: must be a JSON object`);
  }
  return v as Json;
}

/** A special token entry: a string, or an AddedToken object `{content, …}` as transformers saves them. */
function tokenString(v: unknown): string | null {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as Json).content === "string") {
    return (v as Json).content as string;
  }
  return null;
}

/** Special-token strings from tokenizer_config.json, falling back to special_tokens_map.json. */
interface SpecialTokenNames {
  bos: string | null;
  eos: string | null;
  pad: string | null;
  unk: string | null;
  addBos: boolean | null;
  cleanup: boolean;
}

function specialNames(config: Json | null, map: Json | null): SpecialTokenNames {
  const pick = (k: string) => tokenString(config?.[k]) ?? tokenString(map?.[k]);
  const addBos = config?.add_bos_token;
  const cleanup = config?.clean_up_tokenization_spaces;
  return {
    bos: pick("bos_token"),
    eos: pick("eos_token"),
    pad: pick("pad_token"),
    unk: pick("unk_token"),
    addBos: typeof addBos === "boolean" ? addBos : null,
    // transformers.js and older transformers default to true; GPT-2's config sets it explicitly.
    cleanup: typeof cleanup === "boolean" ? cleanup : true,
  };
}

/** transformers' `clean_up_tokenization`: removes spaces before punctuation and English contractions. */
export function cleanUpTokenization(text: string): string {
  return text.replaceAll(" .", ".").replaceAll(" ?", "?").replaceAll(" !", "!").replaceAll(" ,", ",")
    .replaceAll(" ' ", "'").replaceAll(" n't", "n't").replaceAll(" 'm", "'m").replaceAll(" 's", "'s")
    .replaceAll(" 've", "'ve").replaceAll(" 're", "'re");
}

// ---------------------------------------------------------------------------------------------------------
// keg's own GPT-2 byte-level BPE
// ---------------------------------------------------------------------------------------------------------

/**
 * GPT-2's byte ↔ printable-character table (`bytes_to_unicode`): printable Latin-1 bytes map to
 * themselves and the other 68 bytes to U+0100 onwards, so every byte string is a string of "visible" chars.
 */
function byteTables(): { enc: string[]; dec: Map<string, number> } {
  const keep = (b: number) =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const enc: string[] = new Array(256);
  let next = 256;
  for (let b = 0; b < 256; b++) enc[b] = String.fromCodePoint(keep(b) ? b : next++);
  return { enc, dec: new Map(enc.map((c, b) => [c, b])) };
}

/**
 * GPT-2's pre-tokenizer pattern. `\s` is spelled `\p{White_Space}` because JavaScript's `\s` differs from
 * Oniguruma's and Python `regex`'s (JS adds U+FEFF and lacks U+0085).
 */
const GPT2_SPLIT =
  /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\p{White_Space}\p{L}\p{N}]+|\p{White_Space}+(?!\P{White_Space})|\p{White_Space}+/gu;

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** Options of {@linkcode ByteLevelBpe}. */
export interface ByteLevelBpeOptions {
  /** Added/special tokens matched verbatim in the text before BPE (token string → id). */
  addedTokens?: Record<string, number>;
  /** Which of the added tokens are special (dropped by `skipSpecialTokens`). */
  specialTokens?: readonly string[];
  /** Apply transformers' `clean_up_tokenization` when decoding (default true). */
  cleanup?: boolean;
  /** Prepend a space to text that does not start with whitespace (GPT-2's `add_prefix_space`). */
  addPrefixSpace?: boolean;
}

/**
 * GPT-2 byte-level BPE from `vocab.json` (token → id) and `merges.txt` (one "a b" merge per line in
 * priority order): text is split by GPT-2's regex, each piece's UTF-8 bytes are mapped to the byte
 * alphabet, and the lowest-ranked adjacent pair is merged until no merge applies.
 */
export class ByteLevelBpe {
  #vocab: Map<string, number>;
  #inverse: string[];
  #ranks: Map<string, number>;
  #added: Map<string, number>;
  #special: Set<number>;
  #addedRe: RegExp | null;
  #cleanup: boolean;
  #prefixSpace: boolean;
  #cache = new Map<string, number[]>();
  #bytes = byteTables();

  /** Builds the tokenizer from parsed vocab.json, merges.txt lines (without the #version header) and options. */
  constructor(vocab: Record<string, number>, merges: readonly string[], opts: ByteLevelBpeOptions = {}) {
    this.#vocab = new Map(Object.entries(vocab));
    this.#inverse = [];
    for (const [t, id] of this.#vocab) {
      if (!Number.isSafeInteger(id) || id < 0) {
        throw new TokenizerError(`vocab: id of ${JSON.stringify(t)} is ${id}`);
      }
      this.#inverse[id] = t;
    }
    this.#ranks = new Map();
    merges.forEach((m, i) => {
      const parts = m.split(" ");
      if (parts.length !== 2 || !parts[0] || !parts[1]) {
        throw new TokenizerError(`merges: line ${i + 1} ${JSON.stringify(m)} is not "a b"`);
      }
      if (!this.#ranks.has(m)) this.#ranks.set(m, i);
    });
    this.#added = new Map(Object.entries(opts.addedTokens ?? {}));
    for (const [t, id] of this.#added) this.#inverse[id] ??= t;
    this.#special = new Set(
      (opts.specialTokens ?? []).map((t) => this.#added.get(t) ?? this.#vocab.get(t)).filter((x) =>
        x !== undefined
      ),
    );
    const words = [...this.#added.keys()].sort((a, b) => b.length - a.length);
    this.#addedRe = words.length ? new RegExp(words.map(escapeRegex).join("|"), "gu") : null;
    this.#cleanup = opts.cleanup ?? true;
    this.#prefixSpace = opts.addPrefixSpace ?? false;
  }

  /** Number of distinct ids (vocabulary plus added tokens). */
  get size(): number {
    const ids = new Set(this.#vocab.values());
    for (const id of this.#added.values()) ids.add(id);
    return ids.size;
  }

  /** The id of a token string. */
  tokenToId(token: string): number | undefined {
    return this.#added.get(token) ?? this.#vocab.get(token);
  }

  /** The token string of an id. */
  idToToken(id: number): string | undefined {
    return this.#inverse[id];
  }

  /** Encodes text (added tokens matched verbatim first, then GPT-2 pre-tokenization and BPE). */
  encode(text: string): number[] {
    const out: number[] = [];
    let pos = 0;
    const plain = (s: string, first: boolean) => {
      if (!s) return;
      if (first && this.#prefixSpace && !/^\p{White_Space}/u.test(s)) s = " " + s;
      for (const m of s.matchAll(GPT2_SPLIT)) out.push(...this.#word(m[0]));
    };
    if (this.#addedRe) {
      for (const m of text.matchAll(this.#addedRe)) {
        plain(text.slice(pos, m.index), pos === 0);
        out.push(this.#added.get(m[0])!);
        pos = m.index + m[0].length;
      }
    }
    plain(text.slice(pos), pos === 0);
    return out;
  }

  #word(piece: string): number[] {
    const hit = this.#cache.get(piece);
    if (hit) return hit;
    let symbols = Array.from(new TextEncoder().encode(piece), (b) => this.#bytes.enc[b]);
    while (symbols.length > 1) {
      let best = -1, bestRank = Infinity;
      for (let i = 0; i + 1 < symbols.length; i++) {
        const r = this.#ranks.get(symbols[i] + " " + symbols[i + 1]);
        if (r !== undefined && r < bestRank) {
          bestRank = r;
          best = i;
        }
      }
      if (best < 0) break;
      const a = symbols[best], b = symbols[best + 1];
      const merged: string[] = [];
      for (let i = 0; i < symbols.length; i++) {
        if (i + 1 < symbols.length && symbols[i] === a && symbols[i + 1] === b) {
          merged.push(a + b);
          i++;
        } else merged.push(symbols[i]);
      }
      symbols = merged;
    }
    const ids = symbols.map((s) => {
      const id = this.#vocab.get(s);
      if (id === undefined) {
        throw new TokenizerError(`BPE produced ${JSON.stringify(s)}, which is not in vocab.json`);
      }
      return id;
    });
    if (this.#cache.size > 50_000) this.#cache.clear();
    this.#cache.set(piece, ids);
    return ids;
  }

  /** Decodes ids to text (invalid UTF-8 becomes U+FFFD, as HF's `errors="replace"`). */
  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    const bytes: number[] = [];
    const enc = new TextEncoder();
    for (const id of ids) {
      const tok = this.#inverse[id];
      if (tok === undefined) throw new TokenizerError(`decode: id ${id} is not in the vocabulary`);
      if (this.#special.has(id) && opts.skipSpecialTokens) continue;
      if (this.#added.has(tok)) {
        bytes.push(...enc.encode(tok));
        continue;
      }
      for (const ch of tok) {
        const b = this.#bytes.dec.get(ch);
        if (b === undefined) bytes.push(...enc.encode(ch));
        else bytes.push(b);
      }
    }
    const text = new TextDecoder("utf-8").decode(new Uint8Array(bytes));
    return this.#cleanup ? cleanUpTokenization(text) : text;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------------------

function idOf(
  name: string | null,
  lookup: (t: string) => number | undefined,
  what: string,
  dir: string,
): number | null {
  if (name === null) return null;
  const id = lookup(name);
  if (id === undefined) {
    throw new TokenizerError(`${dir}: ${what} ${JSON.stringify(name)} is not in the vocabulary`);
  }
  return id;
}

function finish(
  dir: string,
  source: Tokenizer["source"],
  encodeRaw: (text: string) => number[],
  decode: (ids: readonly number[], opts?: DecodeOptions) => string,
  tokenToId: (t: string) => number | undefined,
  idToToken: (id: number) => string | undefined,
  vocabSize: number,
  bosId: number | null,
  eosId: number | null,
  padId: number | null,
  addsBos: boolean,
): Tokenizer {
  if (addsBos && bosId === null) {
    throw new TokenizerError(`${dir}: add_bos_token is true but there is no bos_token`);
  }
  if (vocabSize === 0) throw new TokenizerError(`${dir}: ${source}: the vocabulary is empty`);
  return {
    source,
    bosId,
    eosId,
    padId,
    vocabSize,
    addsBos,
    encode(text: string, opts: EncodeOptions = {}): number[] {
      if (typeof text !== "string") throw new TokenizerError(`encode: expected a string, got ${typeof text}`);
      const ids = encodeRaw(text);
      if (opts.addBos ?? addsBos) {
        if (bosId === null) {
          throw new TokenizerError(`${dir}: addBos requested but the tokenizer has no BOS token`);
        }
        ids.unshift(bosId);
      }
      return ids;
    },
    decode(ids: readonly number[], opts?: DecodeOptions): string {
      for (const id of ids) {
        if (!Number.isSafeInteger(id) || id < 0 || idToToken(id) === undefined) {
          throw new TokenizerError(`decode: id ${id} is not in the vocabulary (size ${vocabSize})`);
        }
      }
      return ids.length ? decode(ids, opts) : "";
    },
    tokenToId,
    idToToken,
  };
}

/** The ByteLevel regex of `@huggingface/tokenizers` 0.2.0, which spells whitespace as JavaScript's `\s`. */
const PACKAGE_BYTELEVEL_SOURCE = String
  .raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`;

/**
 * Makes the package's ByteLevel pre-tokenizers split whitespace as HF's Rust tokenizers (Oniguruma) do:
 * JavaScript's `\s` also matches U+FEFF and misses U+0085, so e.g. "a \uFEFF!" would get other ids than
 * in transformers. Only the exact pattern of the pinned package version is replaced.
 */
function fixByteLevelWhitespace(pt: PreTokenizer | null): void {
  if (pt instanceof ByteLevelPreTokenizer) {
    if (pt.pattern.source === PACKAGE_BYTELEVEL_SOURCE) pt.pattern = GPT2_SPLIT;
  } else if (pt instanceof SequencePreTokenizer) {
    for (const inner of pt.tokenizers) fixByteLevelWhitespace(inner);
  }
}

async function fromTokenizerJson(
  dir: string,
  config: Json | null,
  names: SpecialTokenNames,
): Promise<Tokenizer> {
  const path = join(dir, "tokenizer.json");
  const json = await readJson(path);
  let tok: HfTokenizer;
  try {
    tok = new HfTokenizer(json as object, config ?? {});
  } catch (e) {
    throw new TokenizerError(`${path}: cannot build the tokenizer: ${(e as Error).message}`);
  }
  fixByteLevelWhitespace(tok.pre_tokenizer);
  const lookup = (t: string) => tok.token_to_id(t);
  let bosId = idOf(names.bos, lookup, "bos_token", dir);
  const eosId = idOf(names.eos, lookup, "eos_token", dir);
  const padId = idOf(names.pad, lookup, "pad_token", dir);
  // What the post-processor prepends (Llama's TemplateProcessing "<s> $A").
  const plain = tok.encode("a", { add_special_tokens: false }).ids;
  const withSpecial = tok.encode("a", { add_special_tokens: true }).ids;
  const prepended = withSpecial.length > plain.length && withSpecial[0] !== plain[0] ? withSpecial[0] : null;
  if (bosId === null && prepended !== null) bosId = prepended;
  const addsBos = names.addBos ?? (prepended !== null && prepended === bosId);
  return finish(
    dir,
    "tokenizer.json",
    (text) => tok.encode(text, { add_special_tokens: false }).ids,
    (ids, opts) => tok.decode([...ids], { skip_special_tokens: opts?.skipSpecialTokens ?? false }),
    lookup,
    (id) => tok.id_to_token(id),
    tok.get_vocab(true).size,
    bosId,
    eosId,
    padId,
    addsBos,
  );
}

async function fromBpeFiles(dir: string, config: Json | null, names: SpecialTokenNames): Promise<Tokenizer> {
  let vocabPath = join(dir, "vocab.json"), mergesPath = join(dir, "merges.txt");
  if (!(await exists(vocabPath)) && (await exists(join(dir, "encoder.json")))) {
    vocabPath = join(dir, "encoder.json");
  }
  if (!(await exists(mergesPath)) && (await exists(join(dir, "vocab.bpe")))) {
    mergesPath = join(dir, "vocab.bpe");
  }
  const vocab = await readJson(vocabPath);
  if (vocab === null || typeof vocab !== "object" || Array.isArray(vocab)) {
    throw new TokenizerError(`${vocabPath}: must be an object {token: id}`);
  }
  if (Object.keys(vocab).length === 0) throw new TokenizerError(`${vocabPath}: the vocabulary is empty`);
  let mergesText: string;
  try {
    mergesText = await Deno.readTextFile(mergesPath);
  } catch (e) {
    throw new TokenizerError(`${mergesPath}: cannot read: ${(e as Error).message}`);
  }
  const merges = mergesText.split("\n").map((l) => l.replace(/\r$/, ""))
    .filter((l, i) => l.length > 0 && !(i === 0 && l.startsWith("#version")));

  // Added tokens: added_tokens_decoder in tokenizer_config.json, added_tokens.json, and the named specials.
  const added: Record<string, number> = {};
  const special: string[] = [];
  const dec = config?.added_tokens_decoder;
  if (dec && typeof dec === "object") {
    for (const [id, v] of Object.entries(dec as Json)) {
      const t = tokenString(v);
      if (t !== null) {
        added[t] = Number(id);
        if ((v as Json).special !== false) special.push(t);
      }
    }
  }
  const extra = await readJsonIfExists(join(dir, "added_tokens.json"));
  for (const [t, id] of Object.entries(extra ?? {})) if (typeof id === "number") added[t] ??= id;
  const v = vocab as Record<string, number>;
  for (const t of [names.bos, names.eos, names.pad, names.unk]) {
    if (t === null) continue;
    special.push(t);
    if (added[t] === undefined && v[t] !== undefined) added[t] = v[t];
  }
  const bpe = new ByteLevelBpe(v, merges, {
    addedTokens: added,
    specialTokens: special,
    cleanup: names.cleanup,
    addPrefixSpace: config?.add_prefix_space === true,
  });
  const lookup = (t: string) => bpe.tokenToId(t);
  return finish(
    dir,
    "vocab.json+merges.txt",
    (text) => bpe.encode(text),
    (ids, opts) => bpe.decode(ids, opts),
    lookup,
    (id) => bpe.idToToken(id),
    bpe.size,
    idOf(names.bos, lookup, "bos_token", dir),
    idOf(names.eos, lookup, "eos_token", dir),
    idOf(names.pad, lookup, "pad_token", dir),
    names.addBos ?? false,
  );
}

/**
 * Loads the tokenizer of a model directory: `tokenizer.json` when present (via
 * `npm:@huggingface/tokenizers`), else GPT-2 style `vocab.json` + `merges.txt`, with special tokens and
 * BOS behaviour from `tokenizer_config.json` / `special_tokens_map.json`. A directory with only a
 * SentencePiece `tokenizer.model` gets a {@linkcode TokenizerError} saying how to convert it.
 */
export async function loadTokenizer(dir: string, opts: LoadTokenizerOptions = {}): Promise<Tokenizer> {
  const config = await readJsonIfExists(join(dir, "tokenizer_config.json"));
  const map = await readJsonIfExists(join(dir, "special_tokens_map.json"));
  const names = specialNames(config, map);
  const hasJson = await exists(join(dir, "tokenizer.json"));
  const hasBpe = ((await exists(join(dir, "vocab.json"))) || (await exists(join(dir, "encoder.json")))) &&
    ((await exists(join(dir, "merges.txt"))) || (await exists(join(dir, "vocab.bpe"))));
  const source = opts.source ?? (hasJson ? "tokenizer.json" : "bpe");
  if (source === "tokenizer.json" && hasJson) return await fromTokenizerJson(dir, config, names);
  if (source === "bpe" && hasBpe) return await fromBpeFiles(dir, config, names);
  const sp = await exists(join(dir, "tokenizer.model"));
  throw new TokenizerError(
    `${dir}: no tokenizer${opts.source ? ` of kind ${opts.source}` : ""}: expected tokenizer.json, or ` +
      `vocab.json + merges.txt` +
      (sp
        ? ". There is a SentencePiece tokenizer.model, which keg does not read: convert it once in Python with " +
          "AutoTokenizer.from_pretrained(dir).save_pretrained(dir) (writes tokenizer.json)"
        : ""),
  );
}
