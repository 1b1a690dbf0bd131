import { useState, type ReactNode } from "react";
import { tone } from "../states";
import { bytes, isBlobRef, json } from "../format";
import { navigate, href } from "../nav";
import { useShortcuts } from "./Shortcuts";

export function Status({ status }: { status: string }) {
  const t = tone(status);
  return (
    <span className={`badge ${t.className}`} data-status={t.status}>
      {t.icon} {t.label}
    </span>
  );
}

export function Link({ to, children, className }: { to: string; children: ReactNode; className?: string }) {
  return (
    <a
      href={href(to)}
      className={className}
      onClick={(e) => {
        if (e.metaKey || e.ctrlKey || e.button !== 0) return;
        e.preventDefault();
        navigate(to);
      }}
    >
      {children}
    </a>
  );
}

export function Problem({ error }: { error: { message: string } | null | undefined }) {
  if (!error) return null;
  return <div className="problem" role="alert">{error.message}</div>;
}

/** A JSON value, with blob references shown as their size and hash (and a download link when the API has one). */
export function JsonView({ value, blobLink }: { value: unknown; blobLink?: (url: string) => string | null }) {
  const refs: { path: string; ref: { $blob: string; size_bytes: number; sha256: string; media_type?: string } }[] = [];
  const walk = (v: unknown, path: string, depth: number) => {
    if (depth > 8) return;
    if (isBlobRef(v)) refs.push({ path, ref: v });
    else if (Array.isArray(v)) v.slice(0, 1000).forEach((x, i) => walk(x, `${path}[${i}]`, depth + 1));
    else if (typeof v === "object" && v !== null) for (const [k, x] of Object.entries(v)) walk(x, path ? `${path}.${k}` : k, depth + 1);
  };
  walk(value, "", 0);
  return (
    <div>
      {refs.map(({ path, ref }) => {
        const link = blobLink?.(ref.$blob) ?? null;
        return (
          <div className="blob" key={path} data-testid="blob">
            <span className="muted">{path || "value"}</span> blob {bytes(ref.size_bytes)} · sha256 <code>{ref.sha256.slice(0, 16)}…</code>
            {ref.media_type ? <span className="muted"> {ref.media_type}</span> : null}
            {link && <> · <a href={link}>download</a></>}
          </div>
        );
      })}
      <pre className="json">{json(value)}</pre>
    </div>
  );
}

export interface ConfirmProps {
  title: string;
  children?: ReactNode;
  confirm: string;
  danger?: boolean;
  onConfirm: () => Promise<unknown>;
  onClose: () => void;
  describe?: (result: unknown) => ReactNode;
}

/** Asks before an action, runs it, and shows what the router answered (or why it refused). */
export function Confirm(props: ConfirmProps) {
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<unknown>(undefined);
  const [error, setError] = useState<Error | null>(null);
  useShortcuts({ Escape: props.onClose });
  const go = async () => {
    setBusy(true);
    setError(null);
    try {
      setResult(await props.onConfirm());
    } catch (err) {
      setError(err as Error);
    } finally {
      setBusy(false);
    }
  };
  const done = result !== undefined;
  return (
    <div className="modal-back" onClick={props.onClose}>
      <div className="modal" role="dialog" aria-label={props.title} onClick={(e) => e.stopPropagation()}>
        <h2>{props.title}</h2>
        {!done && props.children}
        <Problem error={error} />
        {done && (
          <div className="result" data-testid="action-result">
            {props.describe ? props.describe(result) : <pre className="json">{json(result)}</pre>}
          </div>
        )}
        <div className="actions">
          <button className="ghost" onClick={props.onClose}>{done ? "Close" : "Cancel"}</button>
          {!done && (
            <button className={props.danger ? "danger" : "primary"} disabled={busy} onClick={go} data-testid="confirm">
              {busy ? "…" : props.confirm}
            </button>
          )}
        </div>
      </div>
    </div>
  );
}

export function Tabs({ tabs, active, onChange }: { tabs: [string, string][]; active: string; onChange: (t: string) => void }) {
  return (
    <div className="tabs" role="tablist">
      {tabs.map(([id, label]) => (
        <button key={id} role="tab" aria-selected={active === id} className={active === id ? "tab active" : "tab"} onClick={() => onChange(id)}>
          {label}
        </button>
      ))}
    </div>
  );
}

export function Copy({ text, label = "Copy" }: { text: string; label?: string }) {
  const [done, setDone] = useState(false);
  return (
    <button
      className="ghost small"
      onClick={() => {
        void navigator.clipboard?.writeText(text).then(() => {
          setDone(true);
          setTimeout(() => setDone(false), 1500);
        });
      }}
    >
      {done ? "Copied" : label}
    </button>
  );
}
