//! Bodies of `/networks` requests (moby `network.CreateRequest`); only the fields berth
//! reads, the rest of Docker's body is ignored as dockerd ignores unknown ones.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST /networks/create`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct NetworkCreateRequest {
    pub name: String,
    pub driver: String,
    #[serde(rename = "IPAM", skip_serializing_if = "Option::is_none")]
    pub ipam: Option<IpamRequest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(rename = "EnableIPv6", skip_serializing_if = "Option::is_none")]
    pub enable_ipv6: Option<bool>,
    pub internal: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct IpamRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<Vec<IpamConfig>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct IpamConfig {
    pub subnet: String,
    pub gateway: String,
    pub ip_range: String,
}

/// `POST /networks/{id}/connect` and `/disconnect` (moby `NetworkConnect` and
/// `NetworkDisconnect`; disconnect's `Force` is not read).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct NetworkConnectRequest {
    pub container: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_config: Option<ConnectEndpoint>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ConnectEndpoint {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aliases: Option<Vec<String>>,
    #[serde(rename = "IPAMConfig", skip_serializing_if = "Option::is_none")]
    pub ipam_config: Option<crate::container::EndpointIpamConfig>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_cli_body() {
        let body = r#"{"Name":"n1","Driver":"bridge","Scope":"","EnableIPv6":false,
            "IPAM":{"Driver":"default","Options":{},"Config":[{"Subnet":"10.9.0.0/24"}]},
            "Internal":false,"Attachable":false,"Options":{},"Labels":{"a":"b"}}"#;
        let r: NetworkCreateRequest = serde_json::from_str(body).expect("parses");
        assert_eq!(r.name, "n1");
        assert_eq!(r.enable_ipv6, Some(false));
        let configs = r.ipam.and_then(|i| i.config).expect("config");
        assert_eq!(configs[0].subnet, "10.9.0.0/24");
        assert_eq!(r.labels.expect("labels")["a"], "b");
    }
}
