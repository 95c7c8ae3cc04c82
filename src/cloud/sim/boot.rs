//! What simulated instances boot with and what they write while booting: UserData scripts and
//! console (boot) outputs, standard and for the seed story, plus the EC2 instance type table.
//!
//! The texts imitate an ECS-optimized Amazon Linux 2023 instance: cloud-init runs the
//! UserData from `/var/lib/cloud/instance/scripts/part-001`, then systemd starts `ecs.service`
//! (the ECS agent). A clean boot ends with the agent started; the seed story's boot has the
//! FSx for Lustre mount of its UserData time out, cloud-init report the script failed, and the
//! agent never start (`docs/causes.md` lists what the diagnosis reads from such lines).

use base64::Engine;

use crate::domain::InstanceTypeSize;

/// The EC2 instance types the simulated account knows: (name, vCPUs, memory in MiB).
pub const INSTANCE_TYPES: &[(&str, u32, u64)] = &[
    ("t3.micro", 2, 1024),
    ("t3.large", 2, 8192),
    ("m5.large", 2, 8192),
    ("m5.xlarge", 4, 16384),
    ("c5.large", 2, 4096),
    ("c5.xlarge", 4, 8192),
    ("r5.large", 2, 16384),
];

/// The size of a known instance type; `None` for any other name.
pub fn instance_type_size(instance_type: &str) -> Option<InstanceTypeSize> {
    INSTANCE_TYPES
        .iter()
        .find(|(name, _, _)| *name == instance_type)
        .map(|&(name, vcpus, memory_mib)| InstanceTypeSize {
            instance_type: name.to_string(),
            vcpus,
            memory_mib,
        })
}

/// Base64 of `text`, as EC2 keeps UserData.
pub fn base64(text: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Base64 of `text` gzip-compressed, as cloud-init accepts UserData (EC2 keeps it as given).
pub fn gzip_base64(text: &[u8]) -> String {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(text);
    base64(&encoder.finish().unwrap_or_default())
}

/// A cloud-init MIME multi-part UserData: a `text/cloud-config` part, then a
/// `text/x-shellscript` part with `script`.
pub fn mime_multipart(cloud_config: &str, script: &str) -> String {
    const BOUNDARY: &str = "==MYBOUNDARY==";
    format!(
        "Content-Type: multipart/mixed; boundary=\"{BOUNDARY}\"\n\
         MIME-Version: 1.0\n\
         \n\
         --{BOUNDARY}\n\
         Content-Type: text/cloud-config; charset=\"us-ascii\"\n\
         \n\
         {cloud_config}\n\
         --{BOUNDARY}\n\
         Content-Type: text/x-shellscript; charset=\"us-ascii\"\n\
         \n\
         {script}\n\
         --{BOUNDARY}--\n"
    )
}

/// The standard ECS bootstrap UserData: a bash script that writes `ECS_CLUSTER=<cluster>` to
/// `/etc/ecs/ecs.config`; without a cluster it sets none (the agent then joins `default`).
pub fn ecs_user_data(cluster: Option<&str>) -> String {
    let cluster_line = cluster.map_or_else(String::new, |c| format!("ECS_CLUSTER={c}\n"));
    format!(
        "#!/bin/bash\n\
         cat <<'EOF' >> /etc/ecs/ecs.config\n\
         {cluster_line}ECS_ENABLE_CONTAINER_METADATA=true\n\
         ECS_CONTAINER_STOP_TIMEOUT=30s\n\
         EOF\n"
    )
}

/// The seed story's UserData: joins `cluster`, then mounts an FSx for Lustre file system at
/// `/fsx` before the agent starts.
pub fn fsx_user_data(cluster: &str) -> String {
    format!(
        "#!/bin/bash\n\
         set -euo pipefail\n\
         echo ECS_CLUSTER={cluster} >> /etc/ecs/ecs.config\n\
         echo ECS_ENABLE_CONTAINER_METADATA=true >> /etc/ecs/ecs.config\n\
         dnf install -y lustre-client\n\
         mkdir -p /fsx\n\
         mount -t lustre -o relatime,flock \
         {FSX_DNS}@tcp:/{FSX_MOUNT_NAME} /fsx\n\
         echo \"{FSX_DNS}@tcp:/{FSX_MOUNT_NAME} /fsx lustre defaults,relatime,flock,_netdev 0 0\" \
         >> /etc/fstab\n"
    )
}

/// The FSx for Lustre file system of the seed story.
pub const FSX_DNS: &str = "fs-0a1b2c3d4e5f67890.fsx.us-east-1.amazonaws.com";
/// Its mount name.
pub const FSX_MOUNT_NAME: &str = "abcdefgh";

/// The kernel and early boot lines every instance writes first.
const KERNEL: &str = "\
[    0.000000] Linux version 6.1.115-126.197.amzn2023.x86_64 (mockbuild@ip-10-0-60-10) (gcc (GCC) 11.4.1 20230605 (Red Hat 11.4.1-2), GNU ld version 2.39-6.amzn2023.0.10) #1 SMP PREEMPT_DYNAMIC Tue Nov  5 21:44:32 UTC 2024
[    0.000000] Command line: BOOT_IMAGE=(hd0,gpt1)/boot/vmlinuz-6.1.115-126.197.amzn2023.x86_64 root=UUID=3f1e4d2c-9a7b-4c1e-8d2f-5b6a7c8d9e0f ro console=tty0 console=ttyS0,115200n8 nvme_core.io_timeout=4294967295 rd.emergency=poweroff rd.shell=0 selinux=1 security=selinux quiet
[    0.000000] BIOS-provided physical RAM map:
[    0.512803] ACPI: PM-Timer IO Port: 0xb008
[    1.204117] nvme nvme0: 2/0/0 default/read/poll queues
[    1.318842]  nvme0n1: p1 p127 p128
[    2.871640] systemd[1]: systemd 252.23-2.amzn2023 running in system mode (+PAM +AUDIT +SELINUX -APPARMOR +IMA +SMACK +SECCOMP +GCRYPT +GNUTLS +OPENSSL +ACL +BLKID +CURL +ELFUTILS +FIDO2 +IDN2 -IDN -IPTC +KMOD +LIBCRYPTSETUP +LIBFDISK +PCRE2 -PWQUALITY +P11KIT +QRENCODE +TPM2 +BZIP2 +LZ4 +XZ +ZLIB +ZSTD -BPF_FRAMEWORK +XKBCOMMON +UTMP +SYSVINIT default-hierarchy=unified)
[    2.903311] systemd[1]: Detected virtualization amazon.
[    2.905127] systemd[1]: Detected architecture x86-64.
[    3.412954] systemd[1]: Hostname set to <ip-10-0-12-34.ec2.internal>.
[  OK  ] Reached target local-fs.target - Local File Systems.
[  OK  ] Started systemd-networkd.service - Network Configuration.
[  OK  ] Reached target network-online.target - Network is Online.
";

/// cloud-init's init stage, which every instance runs.
const CLOUD_INIT: &str = "\
[    6.120465] cloud-init[1652]: Cloud-init v. 22.2.2 running 'init' at Mon, 02 Dec 2024 08:14:21 +0000. Up 6.08 seconds.
[    6.212839] cloud-init[1652]: ci-info: ++++++++++++++++++++++++++++++++++++++Net device info++++++++++++++++++++++++++++++++++++++
[    6.214006] cloud-init[1652]: ci-info: | Device |  Up  |          Address           |      Mask     | Scope  |     Hw-Address    |
[    6.215177] cloud-init[1652]: ci-info: |  ens5  | True |        10.0.12.34          | 255.255.240.0 | global | 0a:1b:2c:3d:4e:5f |
[    6.216342] cloud-init[1652]: ci-info: |   lo   | True |         127.0.0.1          |   255.0.0.0   |  host  |         .         |
[  OK  ] Finished cloud-init.service - Initial cloud-init job (metadata service crawler).
[  OK  ] Reached target cloud-config.target - Cloud-config availability.
[    8.402117] cloud-init[1921]: Cloud-init v. 22.2.2 running 'modules:config' at Mon, 02 Dec 2024 08:14:23 +0000. Up 8.36 seconds.
[  OK  ] Finished cloud-config.service - Apply the settings specified in cloud-config.
         Starting cloud-final.service - Execute cloud user/final scripts...
[    9.017652] cloud-init[1988]: Cloud-init v. 22.2.2 running 'modules:final' at Mon, 02 Dec 2024 08:14:24 +0000. Up 8.99 seconds.
";

/// A clean boot: the UserData script runs, cloud-init finishes, the ECS agent starts.
pub fn clean_boot_output() -> Vec<u8> {
    let end = "\
[    9.284530] cloud-init[1988]: Cloud-init v. 22.2.2 finished at Mon, 02 Dec 2024 08:14:24 +0000. Datasource DataSourceEc2Local.  Up 9.27 seconds
[  OK  ] Finished cloud-final.service - Execute cloud user/final scripts.
[  OK  ] Reached target cloud-init.target - Cloud-init target.
         Starting ecs.service - Amazon Elastic Container Service - container agent...
[   10.118203] ecs-init[2207]: level=info time=2024-12-02T08:14:25Z msg=\"pre-start\"
[   11.604711] ecs-init[2207]: level=info time=2024-12-02T08:14:26Z msg=\"Successfully loaded ECS agent image\"
[  OK  ] Started ecs.service - Amazon Elastic Container Service - container agent.
[   12.907355] ecs-init[2207]: level=info time=2024-12-02T08:14:28Z msg=\"Starting Amazon Elastic Container Service Agent\"

Amazon Linux 2023.6.20241121
Kernel 6.1.115-126.197.amzn2023.x86_64 on an x86_64 (-)

ip-10-0-12-34 login: ";
    [KERNEL, CLOUD_INIT, end].concat().into_bytes()
}

/// The seed story's boot: the FSx for Lustre mount times out (the security group does not
/// allow Lustre's port 988 from the instance), `set -e` ends the script, cloud-init reports
/// it failed, and the ECS agent, ordered after cloud-final, never starts.
pub fn fsx_timeout_boot_output() -> Vec<u8> {
    let failure = format!(
        "\
[    9.903114] cloud-init[1988]: Last metadata expiration check: 0:00:02 ago on Mon Dec  2 08:14:22 2024.
[   14.201446] cloud-init[1988]: Package lustre-client-2.15.5-1.amzn2023.0.1.x86_64 is already installed.
[   14.203822] cloud-init[1988]: Dependencies resolved.
[   14.205117] cloud-init[1988]: Nothing to do.
[   14.206340] cloud-init[1988]: Complete!
[   14.389210] LNet: HW NUMA nodes: 1, HW CPU cores: 2, npartitions: 1
[   14.402771] Lustre: Lustre: Build Version: 2.15.5
[   14.611358] LNet: Added LNI 10.0.12.34@tcp [8/256/0/180]
[   14.612004] LNet: Accept secure, port 988
[  114.735912] LustreError: 2291:0:(events.c:205:client_bulk_callback()) event type 1, status -110, desc 00000000c6f2d5a1
[  214.880447] LustreError: 15c-8: MGC172.31.40.17@tcp: Connection to MGS (at 172.31.40.17@tcp) was lost; in progress operations using this service will fail
[  214.884209] Lustre: 2291:0:(client.c:2295:ptlrpc_expire_one_request()) @@@ Request sent has timed out for slow reply: [sent 1733127264/real 1733127264]  req@000000002b1e9f3c x1817263519214592/t0(0) o250->MGC172.31.40.17@tcp@172.31.40.17@tcp:26/25 lens 520/544 e 0 to 1 dl 1733127364 ref 1 fl Rpc:XNQr/0/ffffffff rc 0/-1 job:''
[  214.901733] LustreError: 2291:0:(obd_mount.c:1587:lustre_fill_super()) Unable to mount  (-110)
[  214.903348] cloud-init[1988]: mount.lustre: mount {FSX_DNS}@tcp:/{FSX_MOUNT_NAME} at /fsx failed: Connection timed out
[  214.910562] cloud-init[1988]: 2024-12-02 08:17:49,951 - cc_scripts_user.py[WARNING]: Failed to run module scripts-user (scripts in /var/lib/cloud/instance/scripts)
[  214.912806] cloud-init[1988]: 2024-12-02 08:17:49,952 - util.py[WARNING]: Running module scripts-user (<module 'cloudinit.config.cc_scripts_user' from '/usr/lib/python3.9/site-packages/cloudinit/config/cc_scripts_user.py'>) failed
[  214.915311] cloud-init[1988]: 2024-12-02 08:17:49,952 - util.py[WARNING]: Failed running /var/lib/cloud/instance/scripts/part-001 [32]
[  214.921057] cloud-init[1988]: Cloud-init v. 22.2.2 finished at Mon, 02 Dec 2024 08:17:49 +0000. Datasource DataSourceEc2Local.  Up 214.90 seconds
[FAILED] Failed to start cloud-final.service - Execute cloud user/final scripts.
See 'systemctl status cloud-final.service' for details.
[DEPEND] Dependency failed for ecs.service - Amazon Elastic Container Service - container agent.
[  OK  ] Reached target cloud-init.target - Cloud-init target.

Amazon Linux 2023.6.20241121
Kernel 6.1.115-126.197.amzn2023.x86_64 on an x86_64 (-)

ip-10-0-12-34 login: "
    );
    [KERNEL, CLOUD_INIT, &failure].concat().into_bytes()
}
