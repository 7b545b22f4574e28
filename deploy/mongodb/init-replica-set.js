// Run by the mongodb-init container (mongosh, authenticated as root). Idempotent:
//  1. initiate the single-node replica set if it is not initiated yet;
//  2. wait until this node is a writable primary;
//  3. create (or update) one user per service with readWrite on that service's own
//     database only (cg_<service>): services share no collections.
// Environment: MONGO_REPLICA_SET (rs0), MONGO_MEMBER_HOST (mongodb:27017),
//              <SERVICE>_MONGO_PASSWORD for each service (required).

const replicaSet = process.env.MONGO_REPLICA_SET || "rs0";
const memberHost = process.env.MONGO_MEMBER_HOST || "mongodb:27017";
const services = ["enrolment", "matching", "reporting"];

try {
  rs.status();
  print(`replica set ${replicaSet} already initiated`);
} catch (error) {
  if (error.codeName !== "NotYetInitialized") {
    throw error;
  }
  rs.initiate({ _id: replicaSet, members: [{ _id: 0, host: memberHost }] });
  print(`replica set ${replicaSet} initiated with member ${memberHost}`);
}

const deadline = Date.now() + 60 * 1000;
while (!db.hello().isWritablePrimary) {
  if (Date.now() > deadline) {
    throw new Error("no writable primary after 60s");
  }
  sleep(500);
}

const admin = db.getSiblingDB("admin");
for (const service of services) {
  const variable = `${service.toUpperCase()}_MONGO_PASSWORD`;
  const pwd = process.env[variable];
  if (!pwd) {
    throw new Error(`${variable} is not set`);
  }
  const roles = [{ role: "readWrite", db: `cg_${service}` }];
  if (admin.getUser(service)) {
    admin.updateUser(service, { pwd, roles });
    print(`user ${service} updated`);
  } else {
    admin.createUser({ user: service, pwd, roles });
    print(`user ${service} created`);
  }
}
