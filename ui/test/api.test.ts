// The API client against a real HTTP server (node:http) on a free port: what it sends, and what it makes of
// the router's answers.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Api, ApiError, queryString } from "../src/api";
import type { SseEvent } from "../src/sse";

let server: Server;
let base = "";
const seen: { method: string; url: string; auth: string | undefined; body: string }[] = [];

function body(req: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    let text = "";
    req.on("data", (c) => (text += c));
    req.on("end", () => resolve(text));
  });
}

beforeAll(async () => {
  server = createServer(async (req, res) => {
    seen.push({ method: req.method ?? "", url: req.url ?? "", auth: req.headers.authorization, body: await body(req) });
    const json = (status: number, value: unknown) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(value));
    };
    if (req.url?.startsWith("/runs/stream")) {
      if (req.headers.authorization !== "Bearer kf_good") return json(401, { error: "this route needs a token with scope 'read'", scope: "read" });
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write("retry: 1500\n\n");
      res.write('event: runs\ndata: {"runs":[],"order":[]}\n\n');
      setTimeout(() => res.end(": bye\n\n"), 20);
      return;
    }
    if (req.url === "/whoami") return req.headers.authorization === "Bearer kf_good" ? json(200, { name: "ci", scope: "read" }) : json(401, { error: "the bearer token is not valid (unknown or revoked)", scope: "read" });
    if (req.url === "/pipelines/x") return json(422, { error: "pipeline 'x' is invalid", problems: ["a: bad", "b: worse"] });
    if (req.url === "/text") {
      res.writeHead(500, { "content-type": "text/plain" });
      return res.end("Internal Server Error");
    }
    json(200, { ok: true });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

describe("Api", () => {
  it("sends the token as a bearer header, never in the URL, and JSON bodies", async () => {
    const api = new Api(base, "kf_good");
    expect(await api.get("/whoami")).toEqual({ name: "ci", scope: "read" });
    await api.post("/runs/r1/replay", { from: "b" });
    const [get, post] = seen.slice(-2);
    expect(get.auth).toBe("Bearer kf_good");
    expect(get.url).toBe("/whoami");
    expect(post).toMatchObject({ method: "POST", url: "/runs/r1/replay", auth: "Bearer kf_good", body: '{"from":"b"}' });
  });

  it("sends no authorization header without a token", async () => {
    await new Api(base, null).get("/anything").catch(() => undefined);
    expect(seen[seen.length - 1].auth).toBeUndefined();
  });

  it("turns an error answer into an ApiError with the router's message and problems, and reports a 401", async () => {
    const api = new Api(base, "kf_bad");
    let told: ApiError | null = null;
    api.onUnauthorized = (e) => (told = e);
    const refused = await api.get("/whoami").catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ApiError);
    expect((refused as ApiError).status).toBe(401);
    expect((refused as ApiError).message).toBe("GET /whoami: the bearer token is not valid (unknown or revoked)");
    expect(told).toBe(refused);
    const invalid = (await api.get("/pipelines/x").catch((e: unknown) => e)) as ApiError;
    expect(invalid.message).toBe("GET /pipelines/x: pipeline 'x' is invalid; a: bad; b: worse");
    const plain = (await api.get("/text").catch((e: unknown) => e)) as ApiError;
    expect([plain.status, plain.message]).toEqual([500, "GET /text: Internal Server Error"]);
  });

  it("says the router cannot be reached when nothing listens", async () => {
    const gone = (await new Api("http://127.0.0.1:1", null).get("/whoami").catch((e: unknown) => e)) as ApiError;
    expect(gone.status).toBe(0);
    expect(gone.message).toMatch(/^cannot reach the router/);
  });

  it("reads an event stream with the token in the header, and rejects one it may not open", async () => {
    const api = new Api(base, "kf_good");
    const got: SseEvent[] = [];
    const retry = await api.stream("/runs/stream", { pipeline: "p", status: "" }, (e) => got.push(e), new AbortController().signal);
    expect(retry).toBe(1500);
    expect(got).toEqual([{ event: "runs", data: '{"runs":[],"order":[]}', id: null }]);
    expect(seen[seen.length - 1]).toMatchObject({ url: "/runs/stream?pipeline=p", auth: "Bearer kf_good" });
    const refused = await new Api(base, "kf_bad").stream("/runs/stream", {}, () => undefined, new AbortController().signal).catch((e: unknown) => e);
    expect((refused as ApiError).status).toBe(401);
  });

  it("builds query strings without empty values", () => {
    expect(queryString({ a: "1", b: "", c: null, d: undefined, e: 0, f: "x y" })).toBe("?a=1&e=0&f=x+y");
    expect(queryString({})).toBe("");
  });
});
