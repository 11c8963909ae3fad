/**
 * A pod's name as a Deployment makes it (its name, the ReplicaSet's hash, five characters): what
 * the downward API gives the gateway as PORTCULLIS_INSTANCE_ID, in the manifest test and in the
 * cluster test that runs an instance named like one.
 */
export function deploymentPodName(deployment: string): string {
  return `${deployment}-7c9f6d5b8d-x2k7q`;
}
