// Package ticket issues and verifies short-lived signed tickets: a
// bearer of a ticket may do the one thing its purpose names until it
// expires, with no credentials of its own. abacus gives them to browsers,
// whose EventSource cannot send an Authorization header, to open a
// subscription (docs/console.md, "Auth").
//
// A ticket is "v1.<purpose>.<expiry>.<mac>": the expiry in Unix seconds,
// and the MAC an HMAC-SHA256 of the version, the purpose and the expiry
// under a key derived from the application id and the credentials every
// member is configured with (Key). So any member verifies a ticket any
// other issued, nothing is stored, and changing the credentials revokes
// every ticket out. Verify compares MACs in constant time, as issued
// (a ticket has one spelling only), and checks the purpose and the
// expiry only once the MAC holds, so that a ticket changed in any byte is
// refused (TestVerify, FuzzVerify).
package ticket
