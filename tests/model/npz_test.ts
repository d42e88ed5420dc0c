import assert from "node:assert/strict";
import { decodeBase64 } from "./_b64.ts";
import { encodeNpz, readNpz } from "../../lib/model/npz.ts";

// Made with numpy 2.4.6: np.savez(f, **{"mom2.mom2": np.arange(6, dtype=np.float32).reshape(2, 3) / 4,
// "mom2.count": np.array(7, dtype=np.int64)}) and np.savez_compressed(f, **{"mom2.mom2":
// np.arange(6, dtype=np.float64).reshape(3, 2) / 8, "mom2.count": np.array([9], dtype=np.int64)}).
const STORED =
  "UEsDBC0AAAAAAAAAIQAKnACk//////////8NABQAbW9tMi5tb20yLm5weQEAEACYAAAAAAAAAJgAAAAAAAAAk05VTVBZAQB2AHsnZGVzY3InOiAnPGY0JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDIsIDMpLCB9ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAAAAAACAPgAAAD8AAEA/AACAPwAAoD9QSwMELQAAAAAAAAAhACO48Gz//////////w4AFABtb20yLmNvdW50Lm5weQEAEACIAAAAAAAAAIgAAAAAAAAAk05VTVBZAQB2AHsnZGVzY3InOiAnPGk4JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKCksIH0gICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoHAAAAAAAAAFBLAQItAy0AAAAAAAAAIQAKnACkmAAAAJgAAAANAAAAAAAAAAAAAACAAQAAAABtb20yLm1vbTIubnB5UEsBAi0DLQAAAAAAAAAhACO48GyIAAAAiAAAAA4AAAAAAAAAAAAAAIAB1wAAAG1vbTIuY291bnQubnB5UEsFBgAAAAACAAIAdwAAAJ8BAAAAAA==";
const COMPRESSED =
  "UEsDBC0AAAAIAAAAIQCxai+k//////////8NABQAbW9tMi5tb20yLm5weQEAEACwAAAAAAAAAFcAAAAAAAAAm+wX6hsQychQxlCtnpJanFykbqWgbpNmoa6joJ6WX1RSlJgXn1+UkgoSd0vMKU4FihdnJBakAvkaxjoKRpo6CrUKZAMuBhRwwB5CX4DSN6D0Ayj9xB4AUEsDBC0AAAAIAAAAIQCLgfGN//////////8OABQAbW9tMi5jb3VudC5ucHkBABAAiAAAAAAAAABIAAAAAAAAAJvsF+obEMnIUMZQrZ6SWpxcpG6loG6TaaGuo6Cell9UUpSYF59flJIKEndLzClOBYoXZyQWpAL5GoY6mjoKtQoUAC5OBggAAFBLAQItAy0AAAAIAAAAIQCxai+kVwAAALAAAAANAAAAAAAAAAAAAACAAQAAAABtb20yLm1vbTIubnB5UEsBAi0DLQAAAAgAAAAhAIuB8Y1IAAAAiAAAAA4AAAAAAAAAAAAAAIABlgAAAG1vbTIuY291bnQubnB5UEsFBgAAAAACAAIAdwAAAB4BAAAAAA==";

async function fromB64(b64: string): Promise<string> {
  const path = await Deno.makeTempFile({ suffix: ".npz" });
  await Deno.writeFile(path, decodeBase64(b64));
  return path;
}

Deno.test("reads numpy's savez and savez_compressed files (ROME stats layout)", async () => {
  const a = await readNpz(await fromB64(STORED));
  assert.deepEqual(a.get("mom2.mom2")!.shape, [2, 3]);
  assert.equal(a.get("mom2.mom2")!.dtype, "<f4");
  assert.deepEqual(Array.from(a.get("mom2.mom2")!.data), [0, 0.25, 0.5, 0.75, 1, 1.25]);
  assert.deepEqual(a.get("mom2.count")!.shape, []);
  assert.deepEqual(Array.from(a.get("mom2.count")!.data), [7]);
  const b = await readNpz(await fromB64(COMPRESSED));
  assert.deepEqual(b.get("mom2.mom2")!.shape, [3, 2]);
  assert.deepEqual(Array.from(b.get("mom2.mom2")!.data), [0, 0.125, 0.25, 0.375, 0.5, 0.625]);
  assert.deepEqual(Array.from(b.get("mom2.count")!.data), [9]);
});

Deno.test("encodeNpz round-trips and a non-zip file is a clear error", async () => {
  const bytes = encodeNpz({
    "mom2.mom2": { dtype: "<f4", shape: [2, 2], data: Float32Array.of(1, 2, 3, 4) },
    "mom2.count": { dtype: "<i8", shape: [], data: BigInt64Array.of(42n) },
  });
  const path = await Deno.makeTempFile({ suffix: ".npz" });
  await Deno.writeFile(path, bytes);
  const r = await readNpz(path);
  assert.deepEqual(Array.from(r.get("mom2.mom2")!.data), [1, 2, 3, 4]);
  assert.deepEqual(Array.from(r.get("mom2.count")!.data), [42]);
  await Deno.writeTextFile(path, "not a zip at all, just text that is long enough to scan");
  await assert.rejects(() => readNpz(path), /no end of central directory/);
});
