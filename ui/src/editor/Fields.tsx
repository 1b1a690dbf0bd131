// The editor's form inputs: a text box with template completion ({{ trigger.data... }}, {{ NODE.output... }},
// {{ variables... }}), a YAML box for objects and lists, and a select. Each keeps what is typed while it is
// typed and commits the value it means; a value changed elsewhere (the YAML view, a rename) shows up.

import { useEffect, useRef, useState } from "react";
import { parseDocument, stringify } from "yaml";
import { complete, textFor, typing, valueFor, type Kind } from "./catalogue";

function yamlText(value: unknown): string {
  if (value === undefined) return "";
  return stringify(value, { lineWidth: 0 }).replace(/\n$/, "");
}

export function TemplateBox(props: {
  value: unknown;
  kind?: Kind;
  testId: string;
  suggestions?: string[];
  placeholder?: string;
  cel?: boolean; // a CEL condition: names complete without {{ }}
  onCommit: (value: unknown) => void;
}) {
  const kind = props.kind ?? "text";
  const [draft, setDraft] = useState(textFor(props.value));
  const [open, setOpen] = useState<{ start: number; partial: string } | null>(null);
  const [active, setActive] = useState(0);
  const box = useRef<HTMLTextAreaElement>(null);
  useEffect(() => {
    if (JSON.stringify(valueFor(kind, draft)) !== JSON.stringify(props.value)) setDraft(textFor(props.value));
    // only a change from outside resets what is typed
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [props.value]);
  const shown = open ? (props.suggestions ?? []).filter((s) => s.startsWith(open.partial) || s.includes(open.partial)).slice(0, 12) : [];
  const change = (text: string, caret: number) => {
    setDraft(text);
    props.onCommit(valueFor(kind, text));
    const t = props.suggestions?.length ? typing(text, caret, props.cel) : null;
    setOpen(t);
    setActive(0);
  };
  const choose = (name: string) => {
    const el = box.current;
    const caret = el?.selectionStart ?? draft.length;
    const done = complete(draft, caret, name, props.cel);
    setDraft(done.text);
    props.onCommit(valueFor(kind, done.text));
    setOpen(null);
    requestAnimationFrame(() => {
      el?.focus();
      el?.setSelectionRange(done.caret, done.caret);
    });
  };
  return (
    <div className="tbox">
      <textarea
        ref={box}
        rows={Math.min(8, Math.max(1, draft.split("\n").length))}
        value={draft}
        spellCheck={false}
        placeholder={props.placeholder}
        data-testid={props.testId}
        onChange={(e) => change(e.target.value, e.target.selectionStart)}
        onBlur={() => setTimeout(() => setOpen(null), 150)}
        onKeyDown={(e) => {
          if (!shown.length) return;
          if (e.key === "ArrowDown") setActive((a) => (a + 1) % shown.length);
          else if (e.key === "ArrowUp") setActive((a) => (a - 1 + shown.length) % shown.length);
          else if (e.key === "Enter" || e.key === "Tab") choose(shown[active]);
          else if (e.key === "Escape") setOpen(null);
          else return;
          e.preventDefault();
        }}
      />
      {shown.length > 0 && (
        <ul className="suggestions" data-testid="suggestions">
          {shown.map((s, i) => (
            <li
              key={s}
              className={i === active ? "active" : ""}
              data-testid="suggestion"
              onMouseDown={(e) => {
                e.preventDefault();
                choose(s);
              }}
            >
              {s}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

export function YamlBox(props: { value: unknown; testId: string; onCommit: (value: unknown) => void; rows?: number }) {
  const [draft, setDraft] = useState(yamlText(props.value));
  const [problem, setProblem] = useState<string | null>(null);
  useEffect(() => {
    const doc = parseDocument(draft);
    const mine = draft.trim() === "" ? undefined : doc.errors.length ? Symbol() : doc.toJS();
    if (JSON.stringify(mine) !== JSON.stringify(props.value)) setDraft(yamlText(props.value));
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [props.value]);
  return (
    <div>
      <textarea
        className="yamlbox"
        rows={props.rows ?? Math.min(10, Math.max(2, draft.split("\n").length))}
        value={draft}
        spellCheck={false}
        data-testid={props.testId}
        onChange={(e) => {
          const text = e.target.value;
          setDraft(text);
          if (text.trim() === "") {
            setProblem(null);
            props.onCommit(undefined);
            return;
          }
          const doc = parseDocument(text);
          if (doc.errors.length) setProblem(doc.errors[0].message.split("\n")[0]);
          else {
            setProblem(null);
            props.onCommit(doc.toJS());
          }
        }}
      />
      {problem && <div className="err small">{problem}</div>}
    </div>
  );
}

export function Choice(props: { value: unknown; options: string[]; testId: string; onCommit: (value: unknown) => void; kind?: Kind }) {
  return (
    <select value={textFor(props.value)} data-testid={props.testId} onChange={(e) => props.onCommit(valueFor(props.kind ?? "text", e.target.value))}>
      <option value="">—</option>
      {props.options.map((o) => (
        <option key={o} value={o}>{o}</option>
      ))}
    </select>
  );
}

export function Row(props: { label: string; hint?: string; required?: boolean; children: React.ReactNode; extra?: React.ReactNode }) {
  return (
    <label className="field efield">
      <span title={props.hint}>
        {props.label}
        {props.required && <b className="err"> *</b>}
        {props.extra}
      </span>
      {props.children}
    </label>
  );
}
