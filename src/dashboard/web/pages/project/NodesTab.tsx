import { useMutation, useQuery, useSubscription } from '@apollo/client/react';
import { useState, type FormEvent } from 'react';
import { ErrorText, LogView, StatusBadge } from '../../components/common';
import { fieldsOf } from '../../forms';
import { formatDate } from '../../format';
import {
  AddNodeDocument, DeploymentLinesDocument, DeploymentLogStreamDocument, DeployToNodeDocument, DropNodeDocument, NodeChangesDocument,
  ProjectNodesDocument, type NodeRowFragment,
} from '../../generated/graphql';
import { useLines } from '../../live/log-lines';
import { canEdit } from '../../roles';

export function NodesTab({ projectId }: { projectId: string }) {
  const { data, error, refetch } = useQuery(ProjectNodesDocument, { variables: { id: projectId }, fetchPolicy: 'cache-and-network' });
  // Each change arrives as the node's new state, which Apollo's cache puts in place.
  useSubscription(NodeChangesDocument, { variables: { projectId } });
  const [watching, setWatching] = useState<{ nodeId: string; deploymentId?: string; shownAt: number }>();
  const project = data?.project;
  if (error) return <ErrorText error={error} />;
  if (!project) return <p className="muted">Loading nodes…</p>;
  const editable = canEdit(project.myRole);
  return (
    <>
      {editable && <RegisterNode projectId={projectId} onRegistered={() => void refetch()} />}
      <details className="panel">
        <summary>Deploy key</summary>
        <p>Add this public key to the <code>authorized_keys</code> of each node host; Pollen deploys SuperNodes with it over SSH.</p>
        <pre className="key">{project.deployPublicKey}</pre>
      </details>
      <h2>Nodes ({project.nodes.length})</h2>
      {project.nodes.length === 0 && <p className="muted">No nodes: runs use SuperNodes on the Pollen host (LOCAL).</p>}
      <ul className="cards">
        {project.nodes.map((node) => (
          <NodeCard key={node.id} node={node} editable={editable} onRemoved={() => void refetch()}
            onShowLog={(deploymentId) => setWatching({ nodeId: node.id, deploymentId, shownAt: Date.now() })} />
        ))}
      </ul>
      {watching && <DeploymentLog key={watching.shownAt} nodeId={watching.nodeId} deploymentId={watching.deploymentId} />}
    </>
  );
}

function NodeCard({ node, editable, onShowLog, onRemoved }: {
  node: NodeRowFragment; editable: boolean; onShowLog: (deploymentId?: string) => void; onRemoved: () => void;
}) {
  const [deploy, deploying] = useMutation(DeployToNodeDocument, { variables: { id: node.id } });
  const [remove, removing] = useMutation(DropNodeDocument, { variables: { id: node.id } });
  const deployment = node.deployments[0];
  return (
    <li className="card" data-node={node.id}>
      <h3>{node.name} <StatusBadge status={node.status} /></h3>
      <p className="muted">
        {node.sshUser}@{node.host}:{node.sshPort}{node.lastSeenAt ? ` · last seen ${formatDate(node.lastSeenAt)}` : ''}
      </p>
      {deployment && (
        <p>
          Last deployment: <StatusBadge status={deployment.status} />
          {deployment.failedTask && <> at task “{deployment.failedTask}”</>}
          {deployment.failureReason && <span className="muted"> — {deployment.failureReason}</span>}
        </p>
      )}
      <div className="actions">
        {deployment && <button type="button" onClick={() => onShowLog()}>Show deployment log</button>}
        {editable && (
          <>
            <button type="button" disabled={deploying.loading}
              onClick={() => void deploy().then(({ data }) => data && onShowLog(data.deployNode.id), () => undefined)}>Deploy</button>
            <button type="button" className="danger" disabled={removing.loading} onClick={() => {
              if (confirm(`Remove ${node.name}? Its SuperNode is stopped and its key revoked.`)) void remove().then(onRemoved, () => undefined);
            }}>Remove</button>
          </>
        )}
      </div>
      <ErrorText error={deploying.error ?? removing.error} />
    </li>
  );
}

/**
 * The node's latest deployment: the lines so far, then each line as Ansible prints it. A deployment
 * just started (`deploymentId`) is followed at once, while its first lines are read.
 */
function DeploymentLog({ nodeId, deploymentId }: { nodeId: string; deploymentId?: string }) {
  const { data } = useQuery(DeploymentLinesDocument, { variables: { nodeId }, fetchPolicy: 'network-only' });
  const deployment = data?.node?.deployments[0];
  const [lines, add] = useLines(deployment?.logs);
  const ended = deployment && (deployment.status === 'SUCCEEDED' || deployment.status === 'FAILED');
  useSubscription(DeploymentLogStreamDocument, {
    variables: { deploymentId: deploymentId ?? deployment?.id ?? '' },
    skip: !(deploymentId ?? deployment?.id) || (!deploymentId && ended),
    fetchPolicy: 'no-cache',
    onData: ({ data: { data: streamed } }) => streamed && add(streamed.deploymentLogs),
  });
  return (
    <section aria-labelledby="deployment-log-title">
      <h2 id="deployment-log-title">Deployment log</h2>
      <LogView lines={lines} label="Deployment log" empty="No output yet." />
    </section>
  );
}

function RegisterNode({ projectId, onRegistered }: { projectId: string; onRegistered: () => void }) {
  const [register, { loading, error }] = useMutation(AddNodeDocument);
  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const formElement = event.currentTarget;
    const { text, number } = fieldsOf(formElement);
    const result = await register({ variables: { input: {
      projectId, name: text('name'), host: text('host'), sshUser: text('sshUser'), sshPort: number('sshPort'),
    } } }).catch(() => undefined);
    if (result?.data) {
      formElement.reset();
      onRegistered();
    }
  }
  return (
    <form className="panel grid-form" onSubmit={submit} aria-labelledby="register-node-title">
      <h2 id="register-node-title">Register a node</h2>
      <label>Name<input name="name" required /></label>
      <label>Host<input name="host" required /></label>
      <label>SSH user<input name="sshUser" required /></label>
      <label>SSH port<input name="sshPort" type="number" placeholder="22" /></label>
      <ErrorText error={error} />
      <button type="submit" disabled={loading}>Register node</button>
    </form>
  );
}
