/*
 * An outside reader of a Confluent-framed topic: a plain Kafka consumer with Apicurio Registry's Avro serde
 * (AvroKafkaDeserializer), printing each record's value as one line of JSON (Jackson). Compiled by the test
 * (tests/support/outside_readers.py) against the jars compose/connect/pom.xml fetches.
 *
 *     java -cp JARS:CLASSES PrintValues consumer.properties TOPIC COUNT DEADLINE_S
 *
 * consumer.properties: the Kafka client's (bootstrap, SASL_SSL, group.id) and the serde's (apicurio.registry.*).
 * Exits 0 once COUNT values were printed, 2 when the deadline passed first.
 */
import com.fasterxml.jackson.databind.ObjectMapper;
import io.apicurio.registry.serde.avro.AvroKafkaDeserializer;
import java.io.FileInputStream;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericEnumSymbol;
import org.apache.avro.generic.GenericFixed;
import org.apache.avro.generic.GenericRecord;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public class PrintValues {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        try (FileInputStream in = new FileInputStream(args[0])) {
            props.load(in);
        }
        String topic = args[1];
        int wanted = Integer.parseInt(args[2]);
        long deadline = System.currentTimeMillis() + Long.parseLong(args[3]) * 1000;
        props.put("key.deserializer", ByteArrayDeserializer.class.getName());
        props.put("value.deserializer", AvroKafkaDeserializer.class.getName());
        props.putIfAbsent("auto.offset.reset", "earliest");
        ObjectMapper json = new ObjectMapper();
        int printed = 0;
        try (KafkaConsumer<byte[], Object> consumer = new KafkaConsumer<>(props)) {
            consumer.subscribe(List.of(topic));
            while (printed < wanted && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<byte[], Object> record : consumer.poll(Duration.ofMillis(500))) {
                    System.out.println(json.writeValueAsString(plain(record.value())));
                    printed++;
                }
            }
            System.out.flush();
        }
        System.exit(printed >= wanted ? 0 : 2);
    }

    /** An Avro value as plain Java values Jackson writes as JSON: records and maps as objects, strings as strings. */
    static Object plain(Object value) {
        if (value instanceof GenericRecord record) {
            Map<String, Object> fields = new LinkedHashMap<>();
            for (Schema.Field field : record.getSchema().getFields()) {
                fields.put(field.name(), plain(record.get(field.pos())));
            }
            return fields;
        }
        if (value instanceof Map<?, ?> map) {
            Map<String, Object> entries = new LinkedHashMap<>();
            map.forEach((k, v) -> entries.put(k.toString(), plain(v)));
            return entries;
        }
        if (value instanceof List<?> list) {
            List<Object> items = new ArrayList<>();
            list.forEach(item -> items.add(plain(item)));
            return items;
        }
        if (value instanceof CharSequence || value instanceof GenericEnumSymbol<?>) {
            return value.toString();
        }
        if (value instanceof ByteBuffer bytes) {
            return Base64.getEncoder().encodeToString(bytes.array());
        }
        if (value instanceof GenericFixed fixed) {
            return Base64.getEncoder().encodeToString(fixed.bytes());
        }
        return value;           // null, booleans, numbers
    }
}
