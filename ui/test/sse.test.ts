import { describe, expect, it } from "vitest";
import { SseParser, readEvents, type SseEvent } from "../src/sse";

describe("SseParser", () => {
  it("reads events split anywhere across chunks, with names, ids and several data lines", () => {
    const text = 'retry: 1000\n\nevent: run\nid: 3\ndata: {"a":\ndata: 1}\n\n: keep-alive\n\ndata: plain\r\n\r\n';
    for (let cut = 0; cut < text.length; cut++) {
      const p = new SseParser();
      const events = [...p.feed(text.slice(0, cut)), ...p.feed(text.slice(cut))];
      expect(events, `cut at ${cut}`).toEqual([
        { event: "run", data: '{"a":\n1}', id: "3" },
        { event: "message", data: "plain", id: "3" },
      ]);
      expect(p.retryMs).toBe(1000);
    }
  });

  it("ignores comments, unknown fields and an event without data", () => {
    const p = new SseParser();
    expect(p.feed(": hi\n\nevent: x\n\nfoo: bar\ndata:no-space\n\n")).toEqual([{ event: "message", data: "no-space", id: null }]);
  });

  it("keeps a lone CR at a chunk's end until it knows whether LF follows", () => {
    const p = new SseParser();
    expect(p.feed("data: a\r")).toEqual([]);
    expect(p.feed("\n\r\n")).toEqual([{ event: "message", data: "a", id: null }]);
  });
});

describe("readEvents", () => {
  it("reads a byte stream to its end, UTF-8 split across chunks included", async () => {
    const bytes = new TextEncoder().encode('event: run\ndata: {"name":"çà✓"}\n\nevent: end\ndata: {}\n\n');
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < bytes.length; i += 5) controller.enqueue(bytes.slice(i, i + 5));
        controller.close();
      },
    });
    const got: SseEvent[] = [];
    await readEvents(body, (e) => got.push(e));
    expect(got.map((e) => e.event)).toEqual(["run", "end"]);
    expect(JSON.parse(got[0].data)).toEqual({ name: "çà✓" });
  });
});
