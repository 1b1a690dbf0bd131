import { describe, expect, it } from "vitest";
import { checkTriggerData, fieldValue } from "../src/check";
import { mergeRuns } from "../src/live";
import { visibleRange, ROW_PX } from "../src/components/ItemList";
import { dropped } from "../src/components/Logs";
import { bars, span } from "../src/waterfall";
import { curlExample, shellQuote } from "../src/webhook";
import { duration, isBlobRef, traceback } from "../src/format";
import type { RunRecord, RunSummary } from "../src/types";

describe("checkTriggerData", () => {
  const inputs = [{ name: "text", nodes: ["shout"] }, { name: "n", nodes: ["a", "b"] }];
  it("names each field the pipeline reads that the data lacks", () => {
    expect(checkTriggerData('{"text": "hi"}', inputs)).toEqual({ ok: false, problems: ["missing 'n', which a, b read as trigger.data.n"] });
    expect(checkTriggerData('{"text": "hi", "n": 2}', inputs)).toEqual({ ok: true, value: { text: "hi", n: 2 } });
    expect(checkTriggerData("[1]", inputs).ok).toBe(false);
    expect(checkTriggerData("{oops", inputs)).toMatchObject({ ok: false });
    expect(checkTriggerData("3", [])).toEqual({ ok: true, value: 3 });
  });
  it("takes form fields as JSON where they parse", () => {
    expect([fieldValue("12"), fieldValue("[1]"), fieldValue("hello"), fieldValue("")]).toEqual([12, [1], "hello", ""]);
  });
});

describe("mergeRuns", () => {
  const s = (id: string, version: number) => ({ id, version }) as RunSummary;
  it("updates changed runs, keeps the others, follows the server's order and drops runs that left the page", () => {
    const page = new Map<string, RunSummary>();
    expect(mergeRuns(page, [s("a", 1), s("b", 1)], ["b", "a"]).map((r) => r.id)).toEqual(["b", "a"]);
    const next = mergeRuns(page, [s("c", 1), s("a", 2)], ["c", "b", "a"]);
    expect(next.map((r) => [r.id, r.version])).toEqual([["c", 1], ["b", 1], ["a", 2]]);
    expect(mergeRuns(page, [], ["c", "b"]).map((r) => r.id)).toEqual(["c", "b"]);
    expect(page.has("a")).toBe(false);
  });
});

describe("visibleRange", () => {
  it("renders a window of rows, not a thousand", () => {
    const [first, last] = visibleRange(500 * ROW_PX, 260, 1000);
    expect(first).toBeLessThanOrEqual(500);
    expect(last).toBeGreaterThan(500 + 260 / ROW_PX);
    expect(last - first).toBeLessThan(40);
    expect(visibleRange(0, 260, 3)).toEqual([0, 3]);
  });
});

describe("waterfall bars", () => {
  it("places each started node from its queue time to its end, relative to the run's start", () => {
    const run = {
      created_at: "2026-01-01T00:00:00.000Z",
      finished_at: "2026-01-01T00:00:02.000Z",
      nodes: {
        a: { status: "succeeded", queued_at: "2026-01-01T00:00:00.100Z", started_at: "2026-01-01T00:00:00.600Z", finished_at: "2026-01-01T00:00:01.000Z", duration_ms: 400 },
        b: { status: "running", queued_at: "2026-01-01T00:00:01.000Z", started_at: "2026-01-01T00:00:01.100Z" },
        c: { status: "pending" },
      },
    } as unknown as RunRecord;
    const list = bars(run, ["a", "b", "c"]);
    expect(list).toEqual([
      { node: "a", status: "succeeded", queuedMs: 100, startMs: 600, endMs: 1000, queueMs: 500, runMs: 400 },
      { node: "b", status: "running", queuedMs: 1000, startMs: 1100, endMs: null, queueMs: 100, runMs: null },
    ]);
    expect(span(run, list)).toBe(2000);
  });
});

describe("curlExample", () => {
  it("signs as the webhook's scheme says", () => {
    const std = curlExample("http://r:8080", "p", { type: "webhook", path: "/hooks/p", auth: { scheme: "standard-webhooks", secret_env: "HOOK" } }, '{"a":"it\'s"}');
    expect(std).toContain(`BODY='{"a":"it'\\''s"}'`);
    expect(std).toContain('SECRET="$HOOK"');
    expect(std).toContain('-H "webhook-signature: v1,$SIG"');
    expect(std).toContain("'http://r:8080/hooks/p'");
    const gh = curlExample("http://r", "p", { type: "webhook", auth: { scheme: "github", secret_env: "GH" } }, "{}");
    expect(gh).toContain('X-Hub-Signature-256: sha256=$SIG');
    const plain = curlExample("http://r", "p", { type: "webhook" }, "{}");
    expect(plain).toContain('Authorization: Bearer $KNFLOW_TOKEN');
    expect(shellQuote("a'b")).toBe("'a'\\''b'");
  });
});

describe("format", () => {
  it("knows a blob reference, a traceback and a duration", () => {
    expect(isBlobRef({ $blob: "file:///x", size_bytes: 5, sha256: "ab", media_type: "application/json" })).toBe(true);
    expect(isBlobRef({ $blob: "file:///x", size_bytes: 5, sha256: "ab", other: 1 })).toBe(false);
    expect(traceback({ traceback: "Traceback (most recent call last)" })).toMatch(/^Traceback/);
    expect(traceback("x")).toBeNull();
    expect([duration(0.5), duration(12.4), duration(1500), duration(null)]).toEqual(["0.50 ms", "12 ms", "1.50 s", "–"]);
  });
});

describe("dropped log lines", () => {
  it("adds up what each try dropped (GET /runs/{id}/logs `truncated`, by NODE:ATTEMPT)", () => {
    expect(dropped({})).toBe(0);
    expect(dropped(undefined)).toBe(0);
    expect(dropped({ "gen[0]:1": 3, "gen[1]:1": 4 })).toBe(7);
  });
});
