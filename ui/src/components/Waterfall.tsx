import { bars, span } from "../waterfall";
import type { RunRecord } from "../types";
import { duration } from "../format";

export function Waterfall({ run, order }: { run: RunRecord; order: string[] }) {
  const list = bars(run, order);
  if (list.length === 0) return <p className="muted">No node has started yet.</p>;
  const total = span(run, list);
  const pct = (v: number) => `${Math.min(100, Math.max(0, (v / total) * 100))}%`;
  const now = Date.now() - Date.parse(run.created_at);
  return (
    <div className="waterfall" data-testid="waterfall">
      <div className="wf-scale muted"><span>0</span><span>{duration(total)}</span></div>
      {list.map((b) => {
        const end = b.endMs ?? now;
        const start = b.startMs ?? end; // never started (cancelled, or failed before it ran): a mark at its end
        const queued = b.queuedMs ?? start;
        return (
          <div className="wf-row" key={b.node}>
            <span className="wf-name mono" title={b.node}>{b.node}</span>
            <span className="wf-track">
              <span className="wf-queue" style={{ left: pct(queued), width: pct(Math.max(0, start - queued)) }} />
              <span className={`wf-run st-${b.status}`} style={{ left: pct(start), width: pct(Math.max(total / 400, end - start)) }} />
            </span>
            <span className="wf-num muted">
              {b.queueMs != null && <>queue {duration(b.queueMs)} · </>}run {duration(b.runMs)}
            </span>
          </div>
        );
      })}
      <div className="wf-legend muted"><span className="wf-queue sample" /> queued (on Knative: the cold start) <span className="wf-run sample st-succeeded" /> running</div>
    </div>
  );
}
