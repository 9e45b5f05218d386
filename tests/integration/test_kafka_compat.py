"""The local broker's Kafka version works with both clients mlbus uses: confluent-kafka (librdkafka) for the
services and aiokafka, which faust-streaming (the drift-watcher's runtime) is built on."""
import asyncio

import aiokafka
import confluent_kafka
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.bus.credentials import aiokafka_credentials
from services.bus.settings import PROJECT_ROOT
from tests.support.polling import read_topic


def kafka_version() -> str:
    pom = (PROJECT_ROOT / "compose" / "kafka" / "pom.xml").read_text()
    return pom.split("<kafka.version>")[1].split("<")[0]


def aiokafka_security(bus) -> dict:
    """The secured broker's TLS and SCRAM settings in aiokafka's terms (what faust is given)."""
    found = aiokafka_credentials(bus.settings)
    return {"security_protocol": "SASL_SSL", "sasl_mechanism": found["mechanism"],
            "sasl_plain_username": found["username"], "sasl_plain_password": found["password"],
            "ssl_context": found["ssl_context"]}


def test_aiokafka_transactions_and_consumer_groups_work_on_the_local_broker(bus):
    topic = bus.catalogue.physical("kpis")
    security = aiokafka_security(bus)

    async def round_trip() -> list[bytes]:
        producer = AIOKafkaProducer(bootstrap_servers=bus.settings.bootstrap, transactional_id="compat-test",
                                    **security)
        await producer.start()
        try:
            async with producer.transaction():        # faust's exactly-once mode uses transactions
                for i in range(10):
                    await producer.send(topic, f"v{i}".encode(), key=b"k")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bus.settings.bootstrap, group_id="compat-group",
                                    auto_offset_reset="earliest", enable_auto_commit=False,
                                    isolation_level="read_committed", **security)
        await consumer.start()
        try:
            values: list[bytes] = []
            async with asyncio.timeout(60):
                while len(values) < 10:
                    for messages in (await consumer.getmany(timeout_ms=1000)).values():
                        values += [m.value for m in messages]
            await consumer.commit()
            return values
        finally:
            await consumer.stop()

    assert asyncio.run(round_trip()) == [f"v{i}".encode() for i in range(10)]
    # And librdkafka reads what aiokafka wrote, transaction markers and all.
    assert [m.value() for m in read_topic(bus, "kpis", expected=10)] == [f"v{i}".encode() for i in range(10)]
    print(f"Kafka {kafka_version()} with confluent-kafka {confluent_kafka.version()[0]} "
          f"(librdkafka {confluent_kafka.libversion()[0]}) and aiokafka {aiokafka.__version__}")
