// Package console serves abacus's web console: a static page and its
// assets, built into the binary (static/, embedded), that every member
// serves without auth, since they hold no data. The page calls the API
// under /api/v1 from the browser with the credentials the user gives it;
// the console itself never talks to anything but the member that served
// it (docs/console.md).
//
// # Paths
//
// The page is served at "/", each other file of static/ under Prefix
// ("/console/app.js"). index.html names its assets by those absolute
// paths; the page's own navigation lives in the URL's fragment
// ("/#/stores"), so that "/" is the only page path and any other path
// outside the API stays a 404.
//
// # Caching
//
// Every file carries a strong ETag, a hash of its content, and answers a
// matching If-None-Match with 304. The page is served with
// "Cache-Control: no-cache" (revalidated on every load), and New rewrites
// its references to its assets ("/console/app.js") into versioned ones
// ("/console/app.js?v=<hash>"): an asset asked for with its current
// version may be cached for a year, since a new build changes the URL the
// page asks for. An asset asked for without it, or with another version
// (a page of another build, in a rolling upgrade), is served no-cache
// (TestCaching).
//
// # Security headers
//
// Every answer carries a Content-Security-Policy that allows scripts,
// styles, images and connections from the member's own origin only (no
// inline script or style, no CDN, images also as data: URLs) and no
// framing, plus X-Content-Type-Options: nosniff and Referrer-Policy:
// no-referrer (TestSecurityHeaders). A file's Content-Type comes from a
// fixed table of extensions, never from sniffing or the host's MIME
// database; New refuses a file whose extension the table lacks
// (TestEveryFileHasAType).
package console
