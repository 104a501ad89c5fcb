// The notices a piece of work emits (what the CLI prints as `notice: ...`), collected while it runs.
import { onNotice } from '../../src/util/notice.js';

/** Runs `fn` and returns its result with every notice emitted meanwhile. */
export async function collectNotices<T>(fn: () => Promise<T>): Promise<{ result: T; notices: string[] }> {
  const notices: string[] = [];
  const stop = onNotice((t) => notices.push(t));
  try {
    return { result: await fn(), notices };
  } finally {
    stop();
  }
}
