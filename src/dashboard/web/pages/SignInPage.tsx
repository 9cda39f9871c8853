import { useState, type FormEvent } from 'react';
import { ErrorText } from '../components/common';
import { fieldsOf } from '../forms';
import { signIn, signUp } from '../session';

export function SignInPage() {
  const [mode, setMode] = useState<'sign-in' | 'sign-up'>('sign-in');
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);

  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const { raw: field } = fieldsOf(event.currentTarget);
    setBusy(true);
    setError(undefined);
    try {
      if (mode === 'sign-in') await signIn(field('username'), field('password'));
      else await signUp(field('username'), field('email'), field('password'));
    } catch (failure) {
      setError(failure);
      setBusy(false);
    }
  }

  const signingUp = mode === 'sign-up';
  return (
    <main id="main" className="sign-in">
      <h1>Pollen</h1>
      <p className="muted">Federated learning on Flower: projects, runs and their metrics, live.</p>
      <form onSubmit={submit} aria-labelledby="sign-in-title">
        <h2 id="sign-in-title">{signingUp ? 'Create an account' : 'Sign in'}</h2>
        <label>
          {signingUp ? 'Username' : 'Username or email'}
          <input name="username" autoComplete="username" required />
        </label>
        {signingUp && (
          <label>
            Email
            <input name="email" type="email" autoComplete="email" required />
          </label>
        )}
        <label>
          Password
          <input name="password" type="password" autoComplete={signingUp ? 'new-password' : 'current-password'} required
            aria-describedby={signingUp ? 'password-rule' : undefined} />
        </label>
        {signingUp && (
          <p id="password-rule" className="hint">8 to 128 characters, with an upper-case and a lower-case letter, a digit and a special character.</p>
        )}
        <ErrorText error={error} />
        <button type="submit" disabled={busy}>{signingUp ? 'Create account' : 'Sign in'}</button>
      </form>
      <p>
        {signingUp ? 'Already have an account? ' : 'New to Pollen? '}
        <button type="button" className="link" onClick={() => {
          setMode(signingUp ? 'sign-in' : 'sign-up');
          setError(undefined);
        }}>
          {signingUp ? 'Sign in' : 'Create an account'}
        </button>
      </p>
    </main>
  );
}
