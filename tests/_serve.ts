/**
 * A tiny static file server on 127.0.0.1 for tests that import keg by URL.
 * @module
 */

/** Serves files under `root` on a random loopback port. */
export function serveDir(root: string): { port: number; close: () => Promise<void> } {
  const ac = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen: () => {} },
    async (req) => {
      const path = decodeURIComponent(new URL(req.url).pathname);
      if (path.includes("..")) return new Response("bad path", { status: 400 });
      try {
        const body = await Deno.readFile(root + path);
        const type = path.endsWith(".ts") ? "application/typescript" : "text/plain";
        return new Response(body, { headers: { "content-type": type } });
      } catch {
        return new Response("not found", { status: 404 });
      }
    },
  );
  return { port: (server.addr as Deno.NetAddr).port, close: () => (ac.abort(), server.finished) };
}
