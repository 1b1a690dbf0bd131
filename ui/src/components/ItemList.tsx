import { useMemo, useRef, useState } from "react";
import type { ItemRecord } from "../types";
import { tone } from "../states";
import { duration } from "../format";

export const ROW_PX = 26;
const OVERSCAN = 8;

/** The rows of a virtual list to render for a scroll position: a window, never all of them. */
export function visibleRange(scrollTop: number, heightPx: number, count: number, rowPx = ROW_PX): [number, number] {
  const first = Math.max(0, Math.floor(scrollTop / rowPx) - OVERSCAN);
  const last = Math.min(count, Math.ceil((scrollTop + heightPx) / rowPx) + OVERSCAN);
  return [first, last];
}

/** A fan-out node's items (a thousand of them or more): a virtual list that renders only the rows in view. */
export function ItemList(props: { items: ItemRecord[]; selected: number | null; onSelect: (i: number) => void }) {
  const [filter, setFilter] = useState<string>("all");
  const [scrollTop, setScrollTop] = useState(0);
  const box = useRef<HTMLDivElement>(null);
  const shown = useMemo(
    () => props.items.map((item, index) => ({ item, index })).filter(({ item }) => filter === "all" || item.status === filter || (filter === "running" && item.status === "scheduled")),
    [props.items, filter],
  );
  const height = 260;
  const [first, last] = visibleRange(scrollTop, height, shown.length);
  return (
    <div className="items">
      <div className="row gap">
        <label>
          Items{" "}
          <select value={filter} onChange={(e) => setFilter(e.target.value)} data-testid="item-filter">
            {["all", "pending", "running", "succeeded", "failed", "cancelled"].map((s) => (
              <option key={s} value={s}>{s}</option>
            ))}
          </select>
        </label>
        <span className="muted">{shown.length} shown of {props.items.length}</span>
      </div>
      <div className="vlist" ref={box} style={{ height }} onScroll={(e) => setScrollTop(e.currentTarget.scrollTop)} data-testid="item-list">
        <div style={{ height: shown.length * ROW_PX, position: "relative" }}>
          {shown.slice(first, last).map(({ item, index }, k) => {
            const t = tone(item.status);
            return (
              <div
                key={index}
                className={`vrow${props.selected === index ? " selected" : ""}`}
                style={{ top: (first + k) * ROW_PX, height: ROW_PX }}
                onClick={() => props.onSelect(index)}
                data-testid="item-row"
              >
                <span className="mono">[{index}]</span>
                <span className={`badge ${t.className}`}>{t.icon} {t.label}</span>
                <span className="muted">#{item.attempt}</span>
                <span className="muted">{item.duration_ms != null ? duration(item.duration_ms) : ""}</span>
                <span className="err">{item.error?.message ?? ""}</span>
              </div>
            );
          })}
        </div>
      </div>
    </div>
  );
}
