//! Sluice as a cluster of nodes coordinated by etcd (docs/cluster.md): membership and the
//! catalog of streams today; shard replication, leadership with epochs and failover build
//! on them.

pub mod catalog;
pub mod deliveries;
pub mod etcd;
pub mod membership;
pub mod replication;
pub mod wire;

pub use catalog::{ClusterLink, ShardPlacement, StreamRecord};
pub use etcd::{Etcd, EtcdError};
pub use membership::{nodes, JoinError, Membership, NodeInfo};
