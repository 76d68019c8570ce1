// /whisk.system/utils/date: the current time (a Date serialises as an ISO 8601 string).
function main() {
  const now = new Date();
  console.log(`It is now ${now}`);
  return { date: now };
}
