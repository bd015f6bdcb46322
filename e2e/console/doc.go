// Package console tests the web console as its users see it: headless
// Chromium, driven over the DevTools protocol (chromedp), opens the page
// a real abacus member serves and works every page of it against real
// members and a kfake broker, checking the DOM, the network log and the
// page's errors. The tests are in console_test.go; make screenshots runs
// them to refresh the images of docs/console.md.
package console
