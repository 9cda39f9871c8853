import { createContext, useContext } from 'react';
import type { Connection } from './apollo';

export const ConnectionContext = createContext<Connection | null>(null);

/** The signed-in user's connection to Pollen (see apollo.ts). */
export function useConnection(): Connection {
  const connection = useContext(ConnectionContext);
  if (!connection) throw new Error('useConnection outside a signed-in page');
  return connection;
}
