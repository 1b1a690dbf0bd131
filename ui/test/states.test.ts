import { describe, expect, it } from "vitest";
import { progress, progressBar, progressText, tone, STATUSES } from "../src/states";
import type { ItemRecord } from "../src/types";

describe("tone", () => {
  it("gives each state its own colour variable, class and label; an invoke in flight shows as running", () => {
    const tones = STATUSES.filter((s) => s !== "scheduled").map(tone);
    expect(new Set(tones.map((t) => t.color)).size).toBe(STATUSES.length - 1);
    expect(tone("failed")).toMatchObject({ color: "var(--st-failed)", className: "st-failed", icon: "✗" });
    expect(tone("scheduled")).toMatchObject({ status: "scheduled", label: "running", className: "st-running" });
  });

  it("shows an unknown state as pending rather than as nothing", () => {
    expect(tone("exploded").status).toBe("pending");
  });
});

describe("fan-out progress", () => {
  const items = (statuses: string[]): ItemRecord[] => statuses.map((status) => ({ status, attempt: 1, error: null }) as ItemRecord);

  it("counts done, failed and running (scheduled counts as running) of N", () => {
    const p = progress(items(["succeeded", "succeeded", "failed", "running", "scheduled", "pending", "cancelled"]));
    expect(p).toEqual({ total: 7, done: 2, failed: 1, running: 2, pending: 1, other: 1 });
    expect(progressText(p)).toBe("2 done · 1 failed · 2 running of 7");
    expect(progressText(progress(items(["pending"])))).toBe("0 done of 1");
  });

  it("splits the bar by share, leaving out empty parts", () => {
    const bar = progressBar(progress(items(["succeeded", "succeeded", "succeeded", "failed"])));
    expect(bar).toEqual([
      { status: "succeeded", share: 0.75 },
      { status: "failed", share: 0.25 },
    ]);
    expect(progressBar(progress([]))).toEqual([]);
  });
});
