import { useEffect, useRef } from "react";

export const SHORTCUTS: [string, string][] = [
  ["g r", "Runs"],
  ["g p", "Pipelines"],
  ["g e", "Events"],
  ["/", "Search (runs list)"],
  ["j / k", "Next / previous run in the list"],
  ["Enter", "Open the selected run"],
  ["x", "Select the run (bulk actions)"],
  ["Esc", "Close the node panel or a dialog"],
  ["t", "Light or dark"],
  ["?", "This help"],
];

function typing(target: EventTarget | null): boolean {
  const el = target as HTMLElement | null;
  return !!el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA" || el.tagName === "SELECT" || el.isContentEditable);
}

/** Keys (or two-key sequences such as "g r") to actions; ignored while typing in a field. */
export function useShortcuts(keys: Record<string, () => void>): void {
  const ref = useRef(keys);
  ref.current = keys;
  useEffect(() => {
    let prefix = "";
    let timer: ReturnType<typeof setTimeout> | undefined;
    const on = (e: KeyboardEvent) => {
      if (e.ctrlKey || e.metaKey || e.altKey || typing(e.target)) return;
      const key = prefix ? `${prefix} ${e.key}` : e.key;
      const action = ref.current[key];
      if (action) {
        e.preventDefault();
        prefix = "";
        action();
        return;
      }
      if (!prefix && Object.keys(ref.current).some((k) => k.startsWith(`${e.key} `))) {
        prefix = e.key;
        clearTimeout(timer);
        timer = setTimeout(() => (prefix = ""), 1200);
      } else prefix = "";
    };
    window.addEventListener("keydown", on);
    return () => window.removeEventListener("keydown", on);
  }, []);
}

export function ShortcutHelp({ onClose }: { onClose: () => void }) {
  useShortcuts({ Escape: onClose });
  return (
    <div className="modal-back" onClick={onClose}>
      <div className="modal" role="dialog" aria-label="Keyboard shortcuts" onClick={(e) => e.stopPropagation()}>
        <h2>Keyboard shortcuts</h2>
        <table className="plain">
          <tbody>
            {SHORTCUTS.map(([k, what]) => (
              <tr key={k}>
                <td><kbd>{k}</kbd></td>
                <td>{what}</td>
              </tr>
            ))}
          </tbody>
        </table>
        <div className="actions"><button onClick={onClose}>Close</button></div>
      </div>
    </div>
  );
}
