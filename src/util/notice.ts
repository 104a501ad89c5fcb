// Notices: things a user should know that are not errors (a cache rebuilt, leftovers removed). Cores emit them;
// the CLI decides where they go.

type Listener = (text: string) => void;
const listeners = new Set<Listener>();

let muted = 0;

/** Tells every listener (the CLI prints `notice: ...` on stderr). */
export function notice(text: string): void {
  if (muted > 0) return;
  for (const l of listeners) l(text);
}

/** Runs `fn` with its notices dropped (work that repeats what was already said, e.g. tl curve's later runs). */
export async function withoutNotices<T>(fn: () => Promise<T>): Promise<T> {
  muted += 1;
  try {
    return await fn();
  } finally {
    muted -= 1;
  }
}

/** Listens to notices until the returned function is called. */
export function onNotice(listener: Listener): () => void {
  listeners.add(listener);
  return () => void listeners.delete(listener);
}
