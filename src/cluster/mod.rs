//! Sluice as a cluster of nodes coordinated by etcd (docs/cluster.md): membership today;
//! shard replication, leadership with epochs and failover build on it.

pub mod etcd;
pub mod membership;

pub use etcd::{Etcd, EtcdError};
pub use membership::{nodes, JoinError, Membership, NodeInfo};
