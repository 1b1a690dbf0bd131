import { useState } from "react";
import { useSession } from "../session";
import { useGet } from "../live";
import { JsonView, Link, Problem } from "../components/Bits";
import { clock } from "../format";
import type { EventsPage as Page } from "../types";

export function EventsPage() {
  const { api } = useSession();
  const [since, setSince] = useState("1h");
  const events = useGet<Page>(api, "/events", { since, limit: 200 }, 5000);
  const [open, setOpen] = useState<string | null>(null);
  const d = events.data;
  return (
    <div className="page">
      <div className="run-head">
        <h1>Events</h1>
        <select value={since} onChange={(e) => setSince(e.target.value)} aria-label="window">
          {["15m", "1h", "24h", "7d"].map((w) => <option key={w} value={w}>last {w}</option>)}
        </select>
        <button className="ghost" onClick={events.reload}>Refresh</button>
      </div>
      <Problem error={events.error} />
      {d && !d.kept && <p className="muted">This router keeps no event log (it needs the NATS JetStream broker): events and dead letters are not listed. Webhook deliveries are each run's trigger event.</p>}
      {d?.truncated && <p className="muted">The window holds more than the router reads at once: choose a shorter one.</p>}
      <h2>Received CloudEvents</h2>
      <p className="muted small">External events (POST /events, Knative's broker, cron ticks); webhook deliveries are in Runs as each run's trigger.</p>
      <table className="grid small" data-testid="events">
        <thead><tr><th>time</th><th>type</th><th>source</th><th>id</th><th>runs</th></tr></thead>
        <tbody>
          {(d?.events ?? []).map((e) => {
            const key = `${String(e.attributes.source)}/${String(e.attributes.id)}`;
            return [
              <tr key={key} onClick={() => setOpen(open === key ? null : key)} className="clickable">
                <td className="mono">{clock(String(e.attributes.time ?? ""))}</td>
                <td>{String(e.attributes.type)}</td>
                <td className="mono">{String(e.attributes.source)}</td>
                <td className="mono">{String(e.attributes.id)}</td>
                <td>{e.runs.length ? e.runs.map((r) => <Link key={r} to={`/runs/${r}`} className="mono">{r} </Link>) : <span className="muted">none matched</span>}</td>
              </tr>,
              open === key && <tr key={`${key}-open`}><td colSpan={5}><JsonView value={{ ...e.attributes, data: e.data }} /></td></tr>,
            ];
          })}
          {d?.kept && d.events.length === 0 && <tr><td colSpan={5} className="muted">none in the window</td></tr>}
        </tbody>
      </table>
      <h2>Dead letters</h2>
      <p className="muted small">Invokes whose retries ran out; each failed its node.</p>
      <table className="grid small" data-testid="dead-letters">
        <thead><tr><th>time</th><th>function</th><th>run</th><th>node</th><th>HTTP</th><th>reason</th></tr></thead>
        <tbody>
          {(d?.dead_letters ?? []).map((l) => {
            const key = `dead/${String(l.attributes.id)}`;
            return [
              <tr key={key} onClick={() => setOpen(open === key ? null : key)} className="clickable">
                <td className="mono">{clock(String(l.attributes.time ?? ""))}</td>
                <td>{l.function}</td>
                <td>{l.run ? <Link to={`/runs/${l.run}${l.node ? `/nodes/${encodeURIComponent(l.node)}` : ""}`} className="mono">{l.run}</Link> : "–"}</td>
                <td className="mono">{l.node}</td>
                <td>{l.code ?? "–"}</td>
                <td className="err">{l.reason}</td>
              </tr>,
              open === key && <tr key={`${key}-open`}><td colSpan={6}><JsonView value={l.attributes} /></td></tr>,
            ];
          })}
          {d?.kept && d.dead_letters.length === 0 && <tr><td colSpan={6} className="muted">none in the window</td></tr>}
        </tbody>
      </table>
    </div>
  );
}
