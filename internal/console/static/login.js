// The login page: shown whenever the member answers 401. The credentials
// are tried on /api/v1/streams before they are kept; refused ones are
// dropped and the page says so.

import {api, ApiError, describe, setCredentials} from './api.js';
import {field, h, message} from './dom.js';

export function mount(root, _params, ctx) {
  const token = h('input', {type: 'password', name: 'token', id: 'login-token', autocomplete: 'current-password', spellcheck: 'false'});
  const user = h('input', {type: 'text', name: 'user', id: 'login-user', autocomplete: 'username', spellcheck: 'false'});
  const password = h('input', {type: 'password', name: 'password', id: 'login-password', autocomplete: 'current-password'});
  const kindToken = h('input', {type: 'radio', name: 'kind', value: 'token', checked: true});
  const kindBasic = h('input', {type: 'radio', name: 'kind', value: 'basic'});
  const tokenFields = h('div', {class: 'fields', data: {kind: 'token'}}, field('Token', token));
  const basicFields = h('div', {class: 'fields', data: {kind: 'basic'}, hidden: true}, field('User', user), field('Password', password));
  const status = h('div', {id: 'login-status', 'aria-live': 'polite'});
  const submit = h('button', {type: 'submit'}, 'Log in');

  const sync = () => {
    tokenFields.hidden = !kindToken.checked;
    basicFields.hidden = kindToken.checked;
  };
  kindToken.addEventListener('change', sync);
  kindBasic.addEventListener('change', sync);

  const form = h('form', {id: 'login', class: 'card narrow'},
    h('fieldset', {class: 'choice'},
      h('legend', {}, 'Credentials'),
      h('label', {}, kindToken, ' Bearer token'),
      h('label', {}, kindBasic, ' User and password')),
    tokenFields, basicFields,
    h('div', {class: 'actions'}, submit),
    status);

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const creds = kindToken.checked ? {token: token.value} : {user: user.value, password: password.value};
    if (kindToken.checked ? !token.value : !user.value) {
      status.replaceChildren(message('error', kindToken.checked ? 'Enter the token.' : 'Enter the user.'));
      return;
    }
    submit.disabled = true;
    status.replaceChildren(message('info', 'Checking…'));
    setCredentials(creds);
    try {
      await api('streams', {signal: ctx.signal, quiet401: true});
    } catch (err) {
      if (err.name === 'AbortError') return;
      setCredentials(null);
      submit.disabled = false;
      const text = err instanceof ApiError && err.status === 401
        ? 'The member refused these credentials.'
        : `The credentials could not be checked: ${describe(err)}`;
      status.replaceChildren(message('error', text));
      (kindToken.checked ? token : password).select();
      return;
    }
    ctx.loggedIn();
  });

  root.append(
    h('h1', {}, 'Log in'),
    h('p', {class: 'muted'}, 'This abacus needs credentials for its API (ABACUS_AUTH_TOKEN or ABACUS_AUTH_BASIC). ' +
      'They are kept in this tab only and sent with every request.'),
    form);
  token.focus();
  return () => {};
}
