// A platform feed action: the API hands its lifecycle calls to the feed service (feeds/service.py), so this
// code only answers if it is ever run directly.
function main() {
  return { error: 'feed actions run in the platform' };
}
