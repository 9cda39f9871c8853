import { ApolloProvider } from '@apollo/client/react';
import { useEffect, useState } from 'react';
import { connect, type Connection } from './apollo';
import { ConnectionContext } from './connection';
import { ComparePage } from './pages/ComparePage';
import { JobPage } from './pages/JobPage';
import { ProjectPage } from './pages/ProjectPage';
import { ProjectsPage } from './pages/ProjectsPage';
import { SignInPage } from './pages/SignInPage';
import { href, useRoute } from './router';
import { refreshSession, signOut, useSession } from './session';

export function App() {
  const session = useSession();
  const [restored, setRestored] = useState(false);
  const [connection, setConnection] = useState<Connection>();
  const userId = session?.user.id;

  // A reload keeps the sign-in: the cookie buys a new access token.
  useEffect(() => {
    refreshSession().catch(() => null).finally(() => setRestored(true));
  }, []);

  // A connection per signed-in user; signing out closes it with everything it cached.
  useEffect(() => {
    if (!userId) return undefined;
    const opened = connect();
    setConnection(opened);
    return () => {
      opened.close();
      setConnection(undefined);
    };
  }, [userId]);

  if (!restored) return <p className="booting">Loading Pollen…</p>;
  if (!session) return <SignInPage />;
  if (!connection) return null;
  return (
    <ConnectionContext.Provider value={connection}>
      <ApolloProvider client={connection.client}>
        <a className="skip" href="#main" onClick={(event) => {
          event.preventDefault();
          document.getElementById('main')?.focus();
        }}>Skip to content</a>
        <header className="top">
          <a className="brand" href={href({ page: 'projects' })}>Pollen</a>
          <nav aria-label="Main">
            <a href={href({ page: 'projects' })}>Projects</a>
            <a href={href({ page: 'compare', jobIds: [] })}>Compare</a>
            <a href="/graphql">GraphiQL</a>
          </nav>
          <span className="who">
            <span aria-label="Signed in as">{session.user.username}</span>
            <button type="button" onClick={() => void signOut()}>Sign out</button>
          </span>
        </header>
        <main id="main" tabIndex={-1}>
          <Page />
        </main>
      </ApolloProvider>
    </ConnectionContext.Provider>
  );
}

function Page() {
  const route = useRoute();
  switch (route.page) {
    case 'projects': return <ProjectsPage />;
    case 'project': return <ProjectPage key={route.projectId} projectId={route.projectId} tab={route.tab} />;
    case 'job': return <JobPage key={route.jobId} jobId={route.jobId} />;
    case 'compare': return <ComparePage jobIds={route.jobIds} />;
  }
}
