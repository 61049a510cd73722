"""The desktop app's EC2 path end to end (desktop-ec2/): the real release binary under Xvfb, driven
through tauri-driver and WebKitWebDriver on a private D-Bus session with gnome-keyring as the OS
keychain, against moto_server on loopback standing in for AWS (MLOPS_AWS_ENDPOINT points the app at
it; it holds Canonical's Ubuntu images, the same as console-core's EC2 tests).

The journey, with a screenshot of every step:

- Credentials: store an AWS access key pair through the form (listed by name, never shown) and
  choose "the access keys stored above" with region us-east-1;
- Platform: AWS EC2;
- Provision: a CIDR without its prefix length is refused with a sentence naming it, before anything
  is created; then a t3.small with a 16 GiB disk and SSH from 203.0.113.7/32 is provisioned. moto
  prints no console output, so cloud-init's host key fingerprints never come: after twelve tries
  (a minute in use; 0.5 s apart here, MLOPS_CONSOLE_OUTPUT_POLL_MS) the app finishes with a warning
  saying so, and the wizard refuses to go on without a pinned host key. An alert e-mail address is
  given with it.

Then moto is asked what exists: one running t3.small from the newest Ubuntu LTS image with the
stack's tags, its key pair, a security group letting in SSH from exactly that CIDR, and an
encrypted 16 GiB gp3 root volume, an instance profile whose role may only put metrics into the
service's namespace (IMDSv2, hop limit 2 so the container reaches it), one CloudWatch alarm per host
rule wired to one tagged SNS topic with the address subscribed; the settings and the page name the
instance and its address, and
the Credentials step lists the key pair's private key in the keychain under the stack and the
address. Last, the data directory and everything the app and the drivers printed are searched for
the AWS secret key and for any private key: they may only be in the keychain.

The CIDR is always typed in: an empty one makes the app ask checkip.amazonaws.com for this
computer's address, and nothing in this test may leave 127.0.0.0/8.
"""
from __future__ import annotations

import base64
import json
import secrets
import time
from pathlib import Path

import pytest

from support.desktop import Console, Page, need, release_binaries
from support.moto import NEWEST_LTS, Moto, moto_bin

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"

REGION = "us-east-1"
STACK = "e2e-ec2"
CIDR = "203.0.113.7/32"
STACK_TAGS = {"mlops-console:stack": STACK, "Name": f"mlops-{STACK}"}
NO_FINGERPRINT = "cloud-init has not printed the host key fingerprints yet"
EMAIL = "oncall@example.com"
PUBLISHER = f"mlops-{STACK}-publisher"


@pytest.fixture(scope="module")
def binaries() -> dict[str, Path]:
    b = release_binaries(ROOT)
    need(moto_bin() is not None, "moto_server is not installed (scripts/setup.sh installs moto[server])")
    return b


@pytest.fixture()
def aws_keys() -> tuple[str, str]:
    """An access key id the vault accepts (16+ letters and digits) and a secret shaped like AWS's
    (40 characters with `+` and `/`): moto takes any, and a real-looking value makes the leak check mean something."""
    return "AKIA" + secrets.token_hex(8).upper(), base64.b64encode(secrets.token_bytes(30)).decode()


@pytest.fixture()
def moto(aws_keys):
    m = Moto(*aws_keys, region=REGION)
    yield m
    m.close()


@pytest.fixture()
def console(tmp_path, display, binaries, moto):
    # moto never prints console output: the app asks its twelve times 0.5 s apart instead of 5 s.
    c = Console(tmp_path, display, binaries, env={"MLOPS_AWS_ENDPOINT": moto.url,
                                                  "MLOPS_CONSOLE_OUTPUT_POLL_MS": "500"})
    yield c
    c.close()


def tags(resource: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def listen_to_provision_events(page: Page) -> None:
    """Records the app's `provision` events in the page (window.__provision), to tell what the app
    reported from what the page showed of it."""
    page.d.execute_async_script(
        "const done = arguments[arguments.length - 1]; window.__provision = [];"
        "window.__TAURI__.event.listen('provision', (e) => window.__provision.push(e.payload)).then(() => done());")


def provision_events(page: Page) -> list[str]:
    return page.d.execute_script("return window.__provision || []")


def test_wizard_provisions_an_ec2_host_on_moto(console: Console, moto: Moto, aws_keys):
    key_id, secret_key = aws_keys
    ec2 = moto.client()
    d = console.driver
    page = Page(d, ARTIFACTS / "desktop-ec2", console.display)
    text, shot, click = page.text, page.shot, page.click
    page.booted()

    # --- 1 credentials: the AWS key pair goes to the keychain; the page lists names, never values
    page.save_credential("aws-access-key-id", key_id)
    page.save_credential("aws-secret-access-key", secret_key)
    page.wait_text("#cred-table", "AWS secret access key", what="the AWS keys listed")
    assert "AWS access key id" in text("#cred-table")
    assert secret_key not in d.page_source and key_id not in d.page_source
    click('input[name="aws-mode"][value="keys"]')
    page.fill("#aws-region", REGION)
    shot("credentials")
    click("#wiz-next")

    # --- 2 platform: AWS EC2
    page.visible("#platforms", what="platform step")
    click('.choice[data-platform="ec2"]')
    assert page.find('.choice[data-platform="ec2"]').get_attribute("aria-checked") == "true"
    shot("platform")
    click("#wiz-next")

    # --- 3 provision: the form, a CIDR without its prefix length refused before anything is created
    page.visible("#ec2-form", what="the EC2 form")
    assert page.find('#ec2-form [name="region"]').get_attribute("value") == REGION, "the region chosen with the keys"
    page.fill('#ec2-form [name="region"]', REGION)
    page.fill('#ec2-form [name="name"]', STACK)
    page.select('#ec2-form [name="instance_type"]', "t3.small")
    page.fill('#ec2-form [name="disk_gib"]', "16")
    page.fill('#ec2-form [name="ssh_cidr"]', "203.0.113.7")
    click("#provision-body button.primary")
    page.wait_text("#wiz-error", "is not a CIDR block", 30, "the CIDR refused")
    error = text("#wiz-error")
    assert "`203.0.113.7`" in error and "203.0.113.7/32" in error, f"the message names the value and shows the form: {error}"
    assert error in text("#provision-log")
    shot("provision-bad-cidr")
    assert not ec2.describe_key_pairs()["KeyPairs"], "a refused form created a key pair"
    assert not ec2.describe_instances()["Reservations"], "a refused form started an instance"

    # --- provisioning, followed live; moto has no console output, so no fingerprint comes
    page.fill('#ec2-form [name="ssh_cidr"]', CIDR)
    page.fill("#alert-emails", EMAIL)
    listen_to_provision_events(page)
    t0 = time.monotonic()
    click("#provision-body button.primary")
    page.wait(lambda drv: any("host key fingerprints" in e for e in provision_events(page)), 120,
              "the instance to be ready and the fingerprints asked for")
    log_while_waiting = text("#provision-log")
    shot("provision-waiting-for-fingerprints")
    page.wait_text("#provision-log", "Ready:", 180, "provisioning to finish")
    provision_s = time.monotonic() - t0
    page.wait(lambda drv: "done" in provision_events(page), 10, "the last progress event")
    log, events = text("#provision-log"), provision_events(page)
    assert f"starting a t3.small from {NEWEST_LTS}" in events, f"the newest Ubuntu LTS image: {events}"
    assert f"warning: {NO_FINGERPRINT}" in log and "run provisioning again in a minute" in log, log
    error_after_success = text("#wiz-error")
    shot("provisioned-without-fingerprint")

    # --- without a pinned host key the wizard does not move on
    click("#wiz-next")
    page.wait_text("#wiz-error", "not pinned yet", what="the wizard refusing to go on")
    refusal = text("#wiz-error")
    assert "Run provisioning again (it creates nothing new)" in refusal, refusal
    assert "current" in page.find('#stepper li[data-step="2"]').get_attribute("class"), "still on Provision"
    shot("no-fingerprint-refused")

    # --- what moto holds: one running t3.small, tagged, from the newest LTS image
    instances = [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]
    assert len(instances) == 1, instances
    inst = instances[0]
    iid = inst["InstanceId"]
    assert (inst["State"]["Name"], inst["InstanceType"], inst["ImageId"]) == ("running", "t3.small", NEWEST_LTS), inst
    assert tags(inst) == STACK_TAGS, inst
    address = inst.get("PublicDnsName") or inst["PublicIpAddress"]
    # ... its key pair, created by EC2 and tagged
    pairs = ec2.describe_key_pairs()["KeyPairs"]
    assert [(k["KeyName"], k["KeyType"]) for k in pairs] == [(f"mlops-{STACK}", "ed25519")], pairs
    assert inst["KeyName"] == f"mlops-{STACK}" and tags(pairs[0]) == STACK_TAGS, (inst, pairs)
    # ... a security group letting in SSH from exactly the CIDR typed, nothing else
    (group,) = [g for g in ec2.describe_security_groups()["SecurityGroups"] if g["GroupName"] == f"mlops-{STACK}-ssh"]
    assert [g["GroupId"] for g in inst["SecurityGroups"]] == [group["GroupId"]], inst["SecurityGroups"]
    assert tags(group) == STACK_TAGS, group
    ingress = [(p["IpProtocol"], p["FromPort"], p["ToPort"], [r["CidrIp"] for r in p["IpRanges"]], p["Ipv6Ranges"])
               for p in group["IpPermissions"]]
    assert ingress == [("tcp", 22, 22, [CIDR], [])], group["IpPermissions"]
    # ... and the root volume as asked: 16 GiB gp3, encrypted, deleted with the instance
    vols = ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [iid]}])["Volumes"]
    assert len(vols) == 1, vols
    v = vols[0]
    assert (v["Size"], v["VolumeType"], v["Encrypted"]) == (16, "gp3", True), v
    assert v["Attachments"][0]["Device"] == inst["RootDeviceName"] == "/dev/sda1", (v, inst)
    assert inst["BlockDeviceMappings"][0]["Ebs"]["DeleteOnTermination"] is True, inst["BlockDeviceMappings"]
    assert tags(v) == STACK_TAGS, v
    user_data = ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")["UserData"]["Value"]
    assert "apt-get install -y -q docker.io docker-compose" in base64.b64decode(user_data).decode()
    # ... the service publishes through an instance profile, whose role may only put metrics into
    # its namespace; IMDSv2 with a hop limit of 2, so the service's container reaches it
    assert inst["IamInstanceProfile"]["Arn"].endswith(f":instance-profile/{PUBLISHER}"), inst["IamInstanceProfile"]
    assert (inst["MetadataOptions"]["HttpTokens"], inst["MetadataOptions"]["HttpPutResponseHopLimit"]) == ("required", 2)
    iam = moto.client("iam")
    policy = iam.get_role_policy(RoleName=PUBLISHER, PolicyName="publish-monitoring-metrics")["PolicyDocument"]
    (statement,) = policy["Statement"]
    assert (statement["Action"], statement["Condition"]) == (
        "cloudwatch:PutMetricData", {"StringEquals": {"cloudwatch:namespace": "MLOps/Inference"}}), policy
    # ... one alarm per host rule (the service's follow its first deploy), on this instance, wired
    # to the stack's one topic, which mails the address given
    sns, cw = moto.client("sns"), moto.client("cloudwatch")
    topics = [t["TopicArn"] for t in sns.list_topics()["Topics"]]
    assert len(topics) == 1 and topics[0].endswith(f":mlops-{STACK}-alerts"), topics
    subs = sns.list_subscriptions_by_topic(TopicArn=topics[0])["Subscriptions"]
    assert [(x["Protocol"], x["Endpoint"]) for x in subs] == [("email", EMAIL)], subs
    alarms = {a["AlarmName"]: a for a in cw.describe_alarms()["MetricAlarms"]}
    assert sorted(alarms) == [f"mlops/{STACK}/host-cpu", f"mlops/{STACK}/host-status-check"], sorted(alarms)
    for a in alarms.values():
        assert a["Namespace"] == "AWS/EC2" and a["Dimensions"] == [{"Name": "InstanceId", "Value": iid}], a
        assert a["AlarmActions"] == a["OKActions"] == topics, a
    assert "CloudWatch alarms: 2 on the host now" in text("#provision-log")

    # --- the page and the settings name the instance and its address; no fingerprint is pinned
    assert f"Ready: {iid} at {address}" in log, log
    settings = json.loads((console.data / "console.json").read_text())
    assert settings["aws"]["mode"] == "keys" and settings["aws"]["region"] == REGION, settings["aws"]
    assert settings["platform"] == "ec2", settings
    assert {k: settings["ec2"][k] for k in ["name", "instance_type", "disk_gib", "ssh_cidr", "instance_id", "alert_emails"]} == {
        "name": STACK, "instance_type": "t3.small", "disk_gib": 16, "ssh_cidr": CIDR, "instance_id": iid,
        "alert_emails": [EMAIL]}, settings["ec2"]
    remote = settings["remote"]
    assert (remote["host"], remote["user"], remote["fingerprint"]) == (address, "ubuntu", ""), remote

    # --- the key pair's private key is in the keychain, under the stack and under the address
    click('#stepper li[data-step="0"] button')
    page.wait_text("#cred-table", f"ssh-key/{address}", what="the host's key listed")
    assert f"ssh-key/ec2-stack/{STACK}" in text("#cred-table"), text("#cred-table")
    source = d.page_source
    assert "PRIVATE KEY" not in source and secret_key not in source
    shot("credentials-with-host-key")

    # --- teardown from the Provision step: the stack's name typed to confirm; nothing of it is left
    click('#stepper li[data-step="2"] button')
    page.visible("#ec2-form", what="the EC2 form again")
    click("#teardown-run")
    page.visible("#teardown-confirm", what="the teardown's confirmation")
    page.fill("#teardown-name", "not-the-stack")
    click("#teardown-go")
    page.wait_text("#wiz-error", "is not the stack this console provisioned", 30, "a wrong name refused")
    assert ec2.describe_instances()["Reservations"][0]["Instances"][0]["State"]["Name"] == "running"
    page.fill("#teardown-name", STACK)
    click("#teardown-go")
    page.wait_text("#provision-log", "The stack is gone.", 120, "the teardown to finish")
    shot("torn-down")
    states = [i["State"]["Name"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]
    assert states == ["terminated"], states
    assert not [g for g in ec2.describe_security_groups()["SecurityGroups"] if g["GroupName"] != "default"]
    assert not ec2.describe_key_pairs()["KeyPairs"]
    assert not cw.describe_alarms()["MetricAlarms"] and not sns.list_topics()["Topics"]
    assert not iam.list_roles()["Roles"] and not iam.list_instance_profiles()["InstanceProfiles"]
    settings = json.loads((console.data / "console.json").read_text())
    assert settings["ec2"]["instance_id"] is None and settings.get("remote") is None, settings
    click('#stepper li[data-step="0"] button')
    page.wait_text("#cred-table", "AWS secret access key", what="the credentials again")
    assert "ssh-key/" not in text("#cred-table"), "the host's private key left the keychain with the host"

    # --- the secret key and the private key are in the keychain and nowhere else
    d.quit()
    for p in console.files():
        data = p.read_bytes()
        assert secret_key.encode() not in data, f"the AWS secret access key leaked into {p}"
        assert b"PRIVATE KEY" not in data, f"a private key is in {p}"
    print(f"provisioning {provision_s:.0f} s; screenshots: {', '.join(page.shots)}; not captured: {page.missed or 'none'}")

    # --- the progress log followed provisioning live (the steps the app reported were on screen
    # while it still waited), and a successful run does not leave the refused CIDR's error up.
    for step in ["key pair", "security group", "waiting for the status checks"]:
        assert step in events, events
        assert step in log_while_waiting, (
            f"the progress log did not show {step!r} while provisioning (the app reported it): {log_while_waiting!r}")
    assert not error_after_success, f"after a successful run the page still shows: {error_after_success}"
