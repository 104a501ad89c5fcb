// Notices: things a user should know that are not errors (a cache rebuilt, leftovers removed). Cores emit them;
// the CLI decides where they go.

type Listener = (text: string) => void;
const listeners = new Set<Listener>();

/** Tells every listener (the CLI prints `notice: ...` on stderr). */
export function notice(text: string): void {
  for (const l of listeners) l(text);
}

/** Listens to notices until the returned function is called. */
export function onNotice(listener: Listener): () => void {
  listeners.add(listener);
  return () => void listeners.delete(listener);
}
