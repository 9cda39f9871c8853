import { useCallback, useEffect, useState } from 'react';

export interface Line {
  at: string;
  line: string;
}

const KEPT = 2_000;

/**
 * Output lines from a query (the latest ones) joined with those a subscription streams. Both may
 * hold the lines written while the page loaded: a line already here (same time, same text) is
 * not added again.
 */
export function useLines(initial: readonly Line[] | undefined): [Line[], (line: Line) => void] {
  const [lines, setLines] = useState<Line[]>([]);
  const add = useCallback((...added: Line[]) => {
    setLines((kept) => {
      const present = new Set(kept.slice(-KEPT).map(key));
      const fresh = added.filter((line) => !present.has(key(line)));
      return fresh.length === 0 ? kept : [...kept, ...fresh].sort((a, b) => a.at.localeCompare(b.at)).slice(-KEPT);
    });
  }, []);
  useEffect(() => {
    if (initial) add(...initial);
  }, [initial, add]);
  return [lines, add];
}

function key({ at, line }: Line): string {
  return `${at}\u0000${line}`;
}
