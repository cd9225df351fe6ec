//! `pause`, `unpause` and `rename`, and the thaw that lets `stop` and `kill` end a paused
//! container. A child module of the container manager because they change the record
//! under the same locks the lifecycle uses.
//!
//! The freezer is the runtime library's (`berth_runtime::lifecycle::pause`/`resume`), on the
//! state root the shims run the containers in: berthd freezes the cgroup itself rather
//! than asking the shim, since the shim's process is not in the container's cgroup.

use std::sync::Arc;

use berth_runtime::state::StateRoot;

use super::{blocking, lock, stop_signal, ContainerManager};
use crate::container_names;
use crate::container_record::Status;
use crate::metadata_store::ContainerStoreError;
use crate::response::ApiError;

impl ContainerManager {
    /// The runtime's state root (`berth-runtime --root`) the shims run containers in: the
    /// runtime's record of a container has its cgroup directories and freezer.
    pub fn runtime_state_root(&self) -> StateRoot {
        StateRoot::new(self.paths.runtime_root())
    }

    /// `POST /containers/{id}/pause`: freezes every process of the container.
    pub async fn pause(self: &Arc<Self>, name: &str) -> Result<(), ApiError> {
        let record = self.find(name)?;
        let live = self.live(&record.id);
        let _op = live.op.lock().await;
        let record = self.find(&record.id)?;
        match record.state.status {
            Status::Running => {}
            Status::Paused => {
                return Err(ApiError::conflict(format!(
                    "Container {} is already paused",
                    record.id
                )))
            }
            _ => {
                return Err(ApiError::conflict(format!(
                    "Container {} is not running",
                    record.id
                )))
            }
        }
        self.set_frozen(&record.id, true).await.map_err(|e| {
            ApiError::internal(format!("Cannot pause container {}: {e}", record.id))
        })?;
        let record = self.update(&record.id, |r| r.state.status = Status::Paused)?;
        self.event("pause", &record, &[]);
        Ok(())
    }

    /// `POST /containers/{id}/unpause`.
    pub async fn unpause(self: &Arc<Self>, name: &str) -> Result<(), ApiError> {
        let record = self.find(name)?;
        let live = self.live(&record.id);
        let _op = live.op.lock().await;
        let record = self.find(&record.id)?;
        if record.state.status != Status::Paused {
            return Err(ApiError::conflict(format!(
                "Container {} is not paused",
                record.id
            )));
        }
        self.set_frozen(&record.id, false).await.map_err(|e| {
            ApiError::internal(format!("Cannot unpause container {}: {e}", record.id))
        })?;
        let record = self.update(&record.id, |r| r.state.status = Status::Running)?;
        self.event("unpause", &record, &[]);
        Ok(())
    }

    /// Freezes or thaws through the runtime library; blocking (it polls the freezer until
    /// the kernel reports the new state).
    async fn set_frozen(&self, id: &str, frozen: bool) -> Result<(), berth_runtime::Error> {
        let root = self.runtime_state_root();
        let id = id.to_owned();
        tokio::task::spawn_blocking(move || {
            if frozen {
                berth_runtime::lifecycle::pause(&root, &id)
            } else {
                berth_runtime::lifecycle::resume(&root, &id)
            }
        })
        .await
        .unwrap_or_else(|e| {
            Err(berth_runtime::Error::InvalidState(format!(
                "worker task failed: {e}"
            )))
        })
    }

    /// After SIGKILL or the container's stop signal went to a paused container, thaw it so
    /// the signal is acted on: a frozen task does not die (cgroup v1 freezer), and dockerd's
    /// `killWithSignal` resumes the task in exactly these two cases. Other signals stay
    /// queued until `unpause`, as in Docker.
    pub(super) async fn thaw_after_signal(self: &Arc<Self>, id: &str, signal: i32) {
        let Ok(record) = self.find(id) else { return };
        if record.state.status != Status::Paused
            || (signal != libc::SIGKILL && signal != stop_signal(&record))
        {
            return;
        }
        // Running before the thaw: the frozen process cannot exit before it, so the exit
        // handler's `exited` always lands after this write, never under it.
        let updated = self.update(id, |r| {
            if r.state.status == Status::Paused {
                r.state.status = Status::Running;
            }
        });
        if let Err(e) = updated {
            tracing::warn!(%id, %e.message, "cannot record the thaw of a paused container");
        }
        if let Err(e) = self.set_frozen(id, false).await {
            tracing::warn!(%id, %e, "cannot thaw the paused container after the stop signal");
        }
    }

    /// `POST /containers/{id}/rename?name=`, with dockerd's checks and wording. The name
    /// column's UNIQUE constraint decides a race with a create or another rename.
    pub async fn rename(self: &Arc<Self>, name: &str, new_name: &str) -> Result<(), ApiError> {
        if name.is_empty() || new_name.is_empty() {
            return Err(ApiError::bad_request(
                "Neither old nor new names may be empty",
            ));
        }
        let record = self.find(name)?;
        let new_name = container_names::validate(new_name)?;
        if new_name == record.name {
            return Err(ApiError::bad_request(
                "Renaming a container with the same name as its current name",
            ));
        }
        let live = self.live(&record.id);
        let _op = live.op.lock().await;
        let this = self.clone();
        let id = record.id.clone();
        let (old_name, renamed) = blocking(move || {
            // Store, then records: the order `create` nests them in.
            let store = lock(&this.store);
            let mut records = lock(&this.records);
            let mut r = records
                .get(&id)
                .cloned()
                .ok_or_else(|| super::not_found(&id))?;
            let old_name = std::mem::replace(&mut r.name, new_name.clone());
            match store.update_container(&r) {
                Ok(()) => {}
                Err(ContainerStoreError::NameInUse { name }) => {
                    let holder = records
                        .values()
                        .find(|o| o.name == name)
                        .map(|o| o.id.clone())
                        .unwrap_or_default();
                    return Err(ApiError::conflict(format!(
                        "Conflict. The container name \"/{name}\" is already in use by container \"{holder}\". You have to remove (or rename) that container to be able to reuse that name."
                    )));
                }
                Err(e) => return Err(ApiError::internal(e.to_string())),
            }
            records.insert(r.id.clone(), r.clone());
            Ok((old_name, r))
        })
        .await?;
        // The containers it shares a user network with find it by its new name (dockerd
        // renames the endpoint's DNS records; berth's names are in /etc/hosts).
        let network_ids: Vec<String> = renamed.endpoints().map(|e| e.network_id.clone()).collect();
        self.refresh_hosts(&network_ids, None);
        self.event("rename", &renamed, &[("oldName", format!("/{old_name}"))]);
        Ok(())
    }
}
