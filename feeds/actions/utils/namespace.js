// /whisk.system/utils/namespace: the namespace the action was invoked in (the caller's, not whisk.system).
function main() {
  return { namespace: process.env.__OW_NAMESPACE };
}
